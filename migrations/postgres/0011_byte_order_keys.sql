-- Byte-order keys on the tables every payment writes. The databases this node is run on are
-- often created with a libc locale (C.UTF-8, en_US.UTF-8), whose text comparisons go through
-- the C library's collation; every B-tree insert and probe on these keys compares a few
-- dozen times. Ids, kinds and currency codes are ASCII and compared only for equality, so
-- byte order changes no answer. By hand, 800 transfers took 21 to 24 ms to insert with
-- their four indexes on C.UTF-8 keys, 15.5 to 19.8 ms on "C" keys (BENCHMARKS.md section 4).
--
-- Changing only the collation rewrites no table, but it rebuilds these tables' indexes under
-- an exclusive lock: on a large existing ledger, run it in a quiet hour.
--
-- Queries that meet these columns with a column of the database's collation in a UNION and
-- then join another table's index (the user history's transaction ids and partners) name
-- the collation they compare in (src/store/evergreen_history.rs); an equality between a
-- "C" value and a default-collation index cannot use that index.
ALTER TABLE transfers
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN debit_kind TYPE TEXT COLLATE "C",
    ALTER COLUMN debit_id TYPE TEXT COLLATE "C",
    ALTER COLUMN credit_kind TYPE TEXT COLLATE "C",
    ALTER COLUMN credit_id TYPE TEXT COLLATE "C";
ALTER TABLE user_feed
    ALTER COLUMN user_id TYPE TEXT COLLATE "C";
ALTER TABLE idempotency
    ALTER COLUMN kind TYPE TEXT COLLATE "C",
    ALTER COLUMN actor_id TYPE TEXT COLLATE "C",
    ALTER COLUMN key TYPE TEXT COLLATE "C";
ALTER TABLE ledger_accounts
    ALTER COLUMN owner_kind TYPE TEXT COLLATE "C",
    ALTER COLUMN owner_id TYPE TEXT COLLATE "C",
    ALTER COLUMN currency TYPE TEXT COLLATE "C";
ALTER TABLE actor_epochs
    ALTER COLUMN kind TYPE TEXT COLLATE "C",
    ALTER COLUMN actor_id TYPE TEXT COLLATE "C";
