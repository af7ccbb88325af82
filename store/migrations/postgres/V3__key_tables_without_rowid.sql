-- Version 3: SQLite's key tables became WITHOUT ROWID. PostgreSQL tables
-- have no rowid; nothing changes here, and the version numbers of the two
-- backends stay the same.
SELECT 1;
