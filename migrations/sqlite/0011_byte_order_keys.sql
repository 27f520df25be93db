-- PostgreSQL's 0011 gives the payment tables' keys byte-order ("C") collation. SQLite
-- compares text byte by byte (BINARY) unless told otherwise, so there is nothing to change;
-- the file keeps the two engines' migration numbers in step.
SELECT 1;
