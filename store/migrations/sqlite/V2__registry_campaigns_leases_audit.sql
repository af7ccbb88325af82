-- Version 2: receive floors, the device registry and rotation progress,
-- campaigns, rotation leases and the audit chain.

CREATE TABLE receive_floors (
    sender     BLOB    NOT NULL CHECK (length(sender) = 8),
    device     BLOB    NOT NULL CHECK (length(device) = 8),
    client     INTEGER NOT NULL,
    key_kind   INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    floor      INTEGER NOT NULL CHECK (floor >= 0),
    PRIMARY KEY (sender, device, client, key_kind, generation)
);

CREATE TABLE devices (
    device          BLOB    PRIMARY KEY CHECK (length(device) = 8),
    commissioned_at INTEGER NOT NULL,
    capabilities    INTEGER NOT NULL,
    deadline        INTEGER NOT NULL,
    rotated_at      INTEGER
);
-- Serves `due`: devices not yet rotated, by deadline.
CREATE INDEX devices_due ON devices (deadline, device) WHERE rotated_at IS NULL;

CREATE TABLE rotation_progress (
    device     BLOB    NOT NULL CHECK (length(device) = 8),
    client     INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('sent', 'installed', 'probed')),
    generation INTEGER NOT NULL,
    invoke_id  INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (device, client)
);

CREATE TABLE campaigns (
    id         TEXT    PRIMARY KEY,
    reason     TEXT    NOT NULL,
    started_at INTEGER NOT NULL
);
CREATE TABLE campaign_devices (
    campaign TEXT    NOT NULL REFERENCES campaigns (id),
    device   BLOB    NOT NULL CHECK (length(device) = 8),
    done     INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    PRIMARY KEY (campaign, device)
);
-- Serves `campaign_pending`: what is left of a campaign, by device.
CREATE INDEX campaign_devices_pending ON campaign_devices (campaign, device) WHERE done = 0;

CREATE TABLE leases (
    device     BLOB    PRIMARY KEY CHECK (length(device) = 8),
    owner      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Append-only: every row is sealed into the chain of its predecessor.
CREATE TABLE audit_log (
    seq      INTEGER PRIMARY KEY CHECK (seq >= 0),
    chain_id BLOB    NOT NULL,
    event    BLOB    NOT NULL,
    mac      BLOB    NOT NULL
);
