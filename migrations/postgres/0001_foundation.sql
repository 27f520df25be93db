-- Identity, sessions, actor fencing epochs and idempotency records.
-- Times are Unix milliseconds (BIGINT) so that one repository serves SQLite and PostgreSQL.

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL,
    email_lower        TEXT NOT NULL UNIQUE,
    password_hash      TEXT,
    fullname           TEXT NOT NULL,
    avatar             TEXT,
    role_id            TEXT NOT NULL,
    email_verified     BOOLEAN NOT NULL DEFAULT FALSE,
    preferred_language TEXT,
    bio                TEXT,
    is_active          BOOLEAN NOT NULL DEFAULT TRUE,
    record_version     BIGINT NOT NULL DEFAULT 1,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    owner_id           TEXT
);

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- One row per actor id ever activated. Each activation raises `epoch`; every journal batch
-- checks that its actors' epochs are still the stored ones (DESIGN.md section 8).
CREATE TABLE actor_epochs (
    kind     TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    epoch    BIGINT NOT NULL,
    PRIMARY KEY (kind, actor_id)
);

-- Idempotency keys and the replies they replay, written in the same batch as the effect.
CREATE TABLE idempotency (
    kind        TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    reply       BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, actor_id, key)
);
