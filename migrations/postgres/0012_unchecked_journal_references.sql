-- The journal appends a message and a notification per posted message, in batches of
-- hundreds. Each foreign key on those rows is a row-level trigger: a probe of the referenced
-- table and a KEY SHARE lock on the row found, once per inserted row. By hand, 270 messages
-- took 10 ms to insert with their two references checked and 4.5 ms without; 270
-- notifications 9.5 ms with their one and 4.2 ms without (BENCHMARKS.md section 4). In the
-- fanout profile the two inserts were more than half of PostgreSQL's time per batch.
--
-- The checks guarded nothing the node can do. Users and threads are never deleted (they are
-- deactivated), a message is only written by its thread's conversation actor, which exists
-- only because the thread's row does and checks that the sender is one of the thread's two
-- participants (themselves checked references of message_threads), and a notification is
-- written for a thread participant, a payment request's payor, or a user the REST handler
-- has looked up as active in the same transaction. The payment tables (transfers, user_feed,
-- idempotency) never had such references, for the same reason.
--
-- A failed check would also have failed the whole batch, every client's command in it, for
-- one bad row.
--
-- Dropping a foreign key also drops its triggers on the referenced table, so this takes a
-- brief exclusive lock on users and message_threads as well as on the two tables: it waits
-- for the transactions using them, and they wait for it.
ALTER TABLE messages
    DROP CONSTRAINT messages_thread_id_fkey,
    DROP CONSTRAINT messages_sender_id_fkey;
ALTER TABLE notifications
    DROP CONSTRAINT notifications_user_id_fkey;
