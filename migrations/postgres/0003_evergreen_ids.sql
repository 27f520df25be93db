-- External login ids linked to users: `facebook:<id>`, `qr:<code>`.
CREATE TABLE user_external_ids (
    external_id TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL
);
CREATE INDEX user_external_ids_by_user ON user_external_ids (user_id);

-- Answers of Evergreen calls that are not wallet commands, replayed for a repeated request_id.
CREATE TABLE evergreen_replies (
    scope       TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, request_id)
);

-- Evergreen merchant listing (register_merchant) and the last place a user was seen (meta lat/lon).
CREATE TABLE merchants (
    user_id     TEXT PRIMARY KEY REFERENCES users (id),
    is_merchant BOOLEAN NOT NULL,
    description TEXT,
    kind        TEXT,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE user_locations (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    lat     DOUBLE PRECISION NOT NULL,
    lon     DOUBLE PRECISION NOT NULL,
    seen_at BIGINT NOT NULL
);
