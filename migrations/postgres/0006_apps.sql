-- Apps: Pavillion's `clientId` (and, later, Muvi studios and Jarvis marketplace accounts).
-- An app authenticates with an API key stored as the hex SHA-256 of a 32-byte random key; its
-- revenue account is the ledger owner ('app', id), which appears on the first credit.
CREATE TABLE apps (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_by TEXT REFERENCES users (id),
    created_at BIGINT NOT NULL
);

-- An app's API keys; rotating revokes the live one and adds a new one.
CREATE TABLE app_api_keys (
    key_hash   TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES apps (id),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX app_api_keys_by_app ON app_api_keys (app_id);

-- The users an app may charge: those who signed up or logged in through it.
CREATE TABLE app_users (
    app_id    TEXT NOT NULL REFERENCES apps (id),
    user_id   TEXT NOT NULL REFERENCES users (id),
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, user_id)
);
CREATE INDEX app_users_by_user ON app_users (user_id);

-- What an app sent to the charge call. `status`: 'recorded' (a message only), 'pending' (its
-- charge was claimed and the wallet not yet answered), 'charged', 'insufficient_funds',
-- 'no_account', 'failed' (the wallet's batch did not commit: nothing moved). A repeated
-- Idempotency-Key finds its row by (app_id, idempotency_key); rows without a key never clash.
CREATE TABLE app_messages (
    id              TEXT PRIMARY KEY,
    app_id          TEXT NOT NULL REFERENCES apps (id),
    user_id         TEXT NOT NULL REFERENCES users (id),
    message         TEXT,
    charge_id       TEXT,
    status          TEXT NOT NULL,
    idempotency_key TEXT,
    fingerprint     TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    settled_at      BIGINT,
    UNIQUE (app_id, idempotency_key)
);
CREATE INDEX app_messages_by_app ON app_messages (app_id, created_at);

-- A charge of a message. Its id is also the id of its ledger transfer when it succeeds, so
-- a 'pending' charge is settled by whether that transfer exists. Amounts are minor units.
CREATE TABLE app_charges (
    id             TEXT PRIMARY KEY,
    app_message_id TEXT NOT NULL REFERENCES app_messages (id),
    app_id         TEXT NOT NULL REFERENCES apps (id),
    user_id        TEXT NOT NULL REFERENCES users (id),
    currency       TEXT NOT NULL,
    amount         BIGINT NOT NULL CHECK (amount > 0),
    status         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    settled_at     BIGINT
);
CREATE INDEX app_charges_by_app ON app_charges (app_id, created_at);
CREATE INDEX app_charges_by_user ON app_charges (user_id, created_at);
