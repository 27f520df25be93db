-- Evergreen history, feedback, search, devices and exchange rates (docs/DECISIONS.md,
-- "Evergreen: history, feedback, search, devices, rates"). Times are Unix milliseconds.

-- Feedback a payor left on a completed transaction (a paid request, or a direct or terminal
-- payment): at most one per transaction, which the primary key enforces.
CREATE TABLE evergreen_feedback (
    transaction_id TEXT PRIMARY KEY,
    payor          TEXT NOT NULL REFERENCES users (id),
    payee          TEXT NOT NULL REFERENCES users (id),
    kind           TEXT NOT NULL CHECK (kind IN ('positive', 'negative')),
    description    TEXT,
    created_at     BIGINT NOT NULL
);

-- Per user, the feedback received as payee. Raised in the transaction that stores the
-- feedback, so ratings are read with one lookup per user, never by counting.
CREATE TABLE evergreen_ratings (
    user_id  TEXT PRIMARY KEY REFERENCES users (id),
    positive BIGINT NOT NULL DEFAULT 0 CHECK (positive >= 0),
    negative BIGINT NOT NULL DEFAULT 0 CHECK (negative >= 0)
);

-- What one EVG is worth in other currencies: 1 EVG = `rate` units of `currency`. The rate is
-- a decimal string (exact; never a float). Operators change rows with SQL.
CREATE TABLE evergreen_exchange_rates (
    currency   TEXT PRIMARY KEY,
    rate       TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO evergreen_exchange_rates (currency, rate, updated_at)
VALUES ('USD', '0.01', CAST(strftime('%s', 'now') AS INTEGER) * 1000);

-- suggested_payors prefilters nearby users with a latitude band.
CREATE INDEX user_locations_by_lat ON user_locations (lat);

-- register_device links at most one Facebook id to an account, even under concurrent calls.
CREATE UNIQUE INDEX user_external_ids_one_facebook ON user_external_ids (user_id)
WHERE external_id LIKE 'facebook:%';
