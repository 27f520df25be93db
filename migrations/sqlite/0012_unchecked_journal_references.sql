-- PostgreSQL's 0012 drops the foreign keys of messages and notifications, whose row-level
-- checks were half of the journal's time on those inserts. SQLite cannot drop a constraint
-- without rebuilding the table, and its checks are plain index probes without row locks, so
-- the embedded store keeps them; the file keeps the two engines' migration numbers in step.
SELECT 1;
