-- Version 3: the key records, send counters and receive floors become
-- WITHOUT ROWID tables. Every read and write of them goes by primary key;
-- in a rowid table that is a walk of the key's index and then of the
-- table, here one walk of the table itself, whose rows are small.

CREATE TABLE key_records_v3 (
    device     BLOB    NOT NULL CHECK (length(device) = 8),
    client     INTEGER NOT NULL,
    role       INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('active', 'pending', 'previous')),
    generation INTEGER NOT NULL,
    record     BLOB    NOT NULL,
    PRIMARY KEY (device, client, role, state)
) WITHOUT ROWID;
INSERT INTO key_records_v3 SELECT device, client, role, state, generation, record FROM key_records;
DROP TABLE key_records;
ALTER TABLE key_records_v3 RENAME TO key_records;

CREATE TABLE send_counters_v3 (
    sender     BLOB    NOT NULL CHECK (length(sender) = 8),
    device     BLOB    NOT NULL CHECK (length(device) = 8),
    client     INTEGER NOT NULL,
    key_kind   INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    ceiling    INTEGER NOT NULL CHECK (ceiling >= 0),
    PRIMARY KEY (sender, device, client, key_kind, generation)
) WITHOUT ROWID;
INSERT INTO send_counters_v3
    SELECT sender, device, client, key_kind, generation, ceiling FROM send_counters;
DROP TABLE send_counters;
ALTER TABLE send_counters_v3 RENAME TO send_counters;

CREATE TABLE receive_floors_v3 (
    sender     BLOB    NOT NULL CHECK (length(sender) = 8),
    device     BLOB    NOT NULL CHECK (length(device) = 8),
    client     INTEGER NOT NULL,
    key_kind   INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    floor      INTEGER NOT NULL CHECK (floor >= 0),
    PRIMARY KEY (sender, device, client, key_kind, generation)
) WITHOUT ROWID;
INSERT INTO receive_floors_v3
    SELECT sender, device, client, key_kind, generation, floor FROM receive_floors;
DROP TABLE receive_floors;
ALTER TABLE receive_floors_v3 RENAME TO receive_floors;
