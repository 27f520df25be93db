-- The notification service: users' push devices, their notifications, and what was pushed.
-- (0007 is reserved for messaging; sqlx applies a missing lower version when it appears.)

-- A push device of a user. `token` is the provider's push token, a credential: it is only
-- read to push and never shown (answers carry its last four characters). Lookups and the
-- uniqueness of a live registration go through `token_digest` (hex SHA-256 of the token):
-- a 4096-byte token could not be a PostgreSQL index key. Unregistering sets `is_active`
-- false (soft delete); a token may be registered again afterwards as a new device.
CREATE TABLE notification_devices (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    platform     TEXT NOT NULL,
    token        TEXT NOT NULL,
    token_digest TEXT NOT NULL,
    name         TEXT,
    is_active    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX notification_devices_live_token
    ON notification_devices (user_id, token_digest) WHERE is_active;
CREATE INDEX notification_devices_by_token ON notification_devices (token_digest);
CREATE INDEX notification_devices_by_user ON notification_devices (user_id, created_at);

-- A notification for one user. `data` is a JSON object as text (at most 4 KiB); `seen_at`
-- is set once, by the first mark-seen.
CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    kind       TEXT NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    data       TEXT NOT NULL,
    seen_at    BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX notifications_by_user ON notifications (user_id, created_at);

-- One push of a notification to one device. The row is claimed ('pending') before the
-- provider is asked, so a notification reaches a device at most once whoever delivers it;
-- then 'sent' or 'failed'. `at` is when it was last changed.
CREATE TABLE push_deliveries (
    id              TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL REFERENCES notifications (id),
    device_id       TEXT NOT NULL REFERENCES notification_devices (id),
    provider        TEXT NOT NULL,
    status          TEXT NOT NULL,
    at              BIGINT NOT NULL,
    UNIQUE (notification_id, device_id)
);
