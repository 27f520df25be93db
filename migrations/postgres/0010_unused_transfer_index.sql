-- No query looks transfers up by reference (the only use of the column is a NOT EXISTS probe
-- of payment_requests by its own key), so the index was write cost with no reader: one more
-- B-tree insert per transfer on the payments hot path.
DROP INDEX IF EXISTS transfers_by_reference;
