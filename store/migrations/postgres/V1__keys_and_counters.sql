-- Version 1: packaged key records and send counters.

-- One row per (slot, state). A slot is (device, client, role); client is the
-- packaged-record client code (0 for the device-wide master key), so the
-- primary key orders slots as `KeySlot` does and never holds a NULL.
CREATE TABLE key_records (
    device     BYTEA  NOT NULL CHECK (length(device) = 8),
    client     BIGINT NOT NULL,
    role       BIGINT NOT NULL,
    state      TEXT   NOT NULL CHECK (state IN ('active', 'pending', 'previous')),
    generation BIGINT NOT NULL,
    record     BYTEA  NOT NULL,
    PRIMARY KEY (device, client, role, state)
);

-- One row per counted key; the ceiling is a claim mark: every value below it
-- may have been issued.
CREATE TABLE send_counters (
    sender     BYTEA  NOT NULL CHECK (length(sender) = 8),
    device     BYTEA  NOT NULL CHECK (length(device) = 8),
    client     BIGINT NOT NULL,
    key_kind   BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    ceiling    BIGINT NOT NULL CHECK (ceiling >= 0),
    PRIMARY KEY (sender, device, client, key_kind, generation)
);
