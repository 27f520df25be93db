-- Conversations: message threads, their messages, their sequenced events (for resume), the
-- open contexts that keep two open threads off one context, and abuse reports.
-- Times are Unix milliseconds (BIGINT).

CREATE TABLE message_threads (
    id               TEXT PRIMARY KEY,
    guest_id         TEXT NOT NULL REFERENCES users (id),
    host_id          TEXT NOT NULL REFERENCES users (id),
    listing_id       TEXT,
    reservation_id   TEXT,
    is_open          BOOLEAN NOT NULL,
    is_active        BOOLEAN NOT NULL DEFAULT TRUE,
    -- The thread's latest event sequence number; every change of the thread takes the next.
    last_seq         BIGINT NOT NULL DEFAULT 0,
    message_count    BIGINT NOT NULL DEFAULT 0,
    last_message_at  BIGINT,
    guest_read_seq   BIGINT NOT NULL DEFAULT 0,
    host_read_seq    BIGINT NOT NULL DEFAULT 0,
    record_version   BIGINT NOT NULL DEFAULT 1,
    owner_id         TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX message_threads_by_guest ON message_threads (guest_id, last_message_at);
CREATE INDEX message_threads_by_host ON message_threads (host_id, last_message_at);

-- One row per context that has an open, active thread: (guest, host, listing, reservation).
-- Claimed before a thread is created or reopened, released when it closes or is deleted.
CREATE TABLE message_thread_contexts (
    context   TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL REFERENCES message_threads (id)
);
CREATE INDEX message_thread_contexts_by_thread ON message_thread_contexts (thread_id);

CREATE TABLE messages (
    id             TEXT PRIMARY KEY,
    thread_id      TEXT NOT NULL REFERENCES message_threads (id),
    seq            BIGINT NOT NULL,
    sender_id      TEXT NOT NULL REFERENCES users (id),
    content        TEXT NOT NULL,
    message_type   TEXT NOT NULL,
    media_url      TEXT,
    is_moderated   BOOLEAN NOT NULL DEFAULT FALSE,
    is_flagged     BOOLEAN NOT NULL DEFAULT FALSE,
    flagged_by     TEXT,
    flag_reason    TEXT,
    is_read        BOOLEAN NOT NULL DEFAULT FALSE,
    is_active      BOOLEAN NOT NULL DEFAULT TRUE,
    sent_at        BIGINT NOT NULL,
    record_version BIGINT NOT NULL DEFAULT 1,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (thread_id, seq)
);

-- Every sequenced push on `thread:<id>`, in order, for resume.
CREATE TABLE thread_events (
    thread_id  TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    event      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (thread_id, seq)
);

CREATE TABLE message_reports (
    id                TEXT PRIMARY KEY,
    message_id        TEXT NOT NULL REFERENCES messages (id),
    reported_by       TEXT NOT NULL REFERENCES users (id),
    report_reason     TEXT NOT NULL,
    moderation_status TEXT NOT NULL,
    admin_id          TEXT,
    reported_at       BIGINT NOT NULL,
    resolution_notes  TEXT,
    is_active         BOOLEAN NOT NULL DEFAULT TRUE,
    record_version    BIGINT NOT NULL DEFAULT 1,
    owner_id          TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX message_reports_by_reporter ON message_reports (reported_by);
CREATE INDEX message_reports_by_message ON message_reports (message_id);
