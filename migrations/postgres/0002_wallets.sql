-- Wallets: a double-entry ledger (balances per owner and currency, transfers), payment requests,
-- holds, PIN state and each user's sequenced feed. Amounts are minor units (BIGINT).

ALTER TABLE users ADD COLUMN pin_hash TEXT;
-- The last sequence number of the user's feed; raised in the batch that adds an entry.
ALTER TABLE users ADD COLUMN feed_seq BIGINT NOT NULL DEFAULT 0;

-- Owners: ('user', user id), ('app', app id), ('system', 'cash_in' | 'cash_out').
-- Per currency, all balances sum to zero. A user's balance never goes below what is held.
CREATE TABLE ledger_accounts (
    owner_kind TEXT NOT NULL,
    owner_id   TEXT NOT NULL,
    currency   TEXT NOT NULL,
    balance    BIGINT NOT NULL DEFAULT 0,
    held       BIGINT NOT NULL DEFAULT 0,
    -- Raised by every change; tells a payee's actor whether a credit is in what it loaded.
    version    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (owner_kind, owner_id, currency),
    CHECK (owner_kind <> 'user' OR (held >= 0 AND balance >= held))
);

CREATE TABLE transfers (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    debit_kind  TEXT NOT NULL,
    debit_id    TEXT NOT NULL,
    credit_kind TEXT NOT NULL,
    credit_id   TEXT NOT NULL,
    currency    TEXT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount > 0),
    reference   TEXT,
    description TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX transfers_by_debit ON transfers (debit_kind, debit_id, seq);
CREATE INDEX transfers_by_credit ON transfers (credit_kind, credit_id, seq);
CREATE INDEX transfers_by_reference ON transfers (reference);

CREATE TABLE payment_requests (
    transaction_id TEXT PRIMARY KEY,
    payor          TEXT NOT NULL,
    payee          TEXT NOT NULL,
    currency       TEXT NOT NULL,
    amount         BIGINT NOT NULL CHECK (amount > 0),
    description    TEXT NOT NULL,
    status         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    closed_at      BIGINT
);
CREATE INDEX payment_requests_by_payor ON payment_requests (payor, created_at);
CREATE INDEX payment_requests_by_payee ON payment_requests (payee, created_at);

CREATE TABLE holds (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    currency    TEXT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount > 0),
    reference   TEXT,
    status      TEXT NOT NULL,
    transfer_id TEXT,
    created_at  BIGINT NOT NULL,
    settled_at  BIGINT
);
CREATE INDEX holds_by_user ON holds (user_id, status);

CREATE TABLE wallet_pins (
    user_id         TEXT PRIMARY KEY,
    failures        BIGINT NOT NULL,
    locked_until_ms BIGINT
);

-- Every push on `user:<id>`, in order, for resume.
CREATE TABLE user_feed (
    user_id    TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    event      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, seq)
);
