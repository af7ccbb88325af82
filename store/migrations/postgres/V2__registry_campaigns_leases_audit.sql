-- Version 2: receive floors, the device registry and rotation progress,
-- campaigns, rotation leases and the audit chain.

CREATE TABLE receive_floors (
    sender     BYTEA  NOT NULL CHECK (length(sender) = 8),
    device     BYTEA  NOT NULL CHECK (length(device) = 8),
    client     BIGINT NOT NULL,
    key_kind   BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    floor      BIGINT NOT NULL CHECK (floor >= 0),
    PRIMARY KEY (sender, device, client, key_kind, generation)
);

CREATE TABLE devices (
    device          BYTEA  PRIMARY KEY CHECK (length(device) = 8),
    commissioned_at BIGINT NOT NULL,
    capabilities    BIGINT NOT NULL,
    deadline        BIGINT NOT NULL,
    rotated_at      BIGINT
);
-- Serves `due`: devices not yet rotated, by deadline.
CREATE INDEX devices_due ON devices (deadline, device) WHERE rotated_at IS NULL;

CREATE TABLE rotation_progress (
    device     BYTEA  NOT NULL CHECK (length(device) = 8),
    client     BIGINT NOT NULL,
    state      TEXT   NOT NULL CHECK (state IN ('sent', 'installed', 'probed')),
    generation BIGINT NOT NULL,
    invoke_id  BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (device, client)
);

CREATE TABLE campaigns (
    id         TEXT   PRIMARY KEY,
    reason     TEXT   NOT NULL,
    started_at BIGINT NOT NULL
);
CREATE TABLE campaign_devices (
    campaign TEXT    NOT NULL REFERENCES campaigns (id),
    device   BYTEA   NOT NULL CHECK (length(device) = 8),
    done     BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (campaign, device)
);
-- Serves `campaign_pending`: what is left of a campaign, by device.
CREATE INDEX campaign_devices_pending ON campaign_devices (campaign, device) WHERE NOT done;

CREATE TABLE leases (
    device     BYTEA  PRIMARY KEY CHECK (length(device) = 8),
    owner      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Append-only: every row is sealed into the chain of its predecessor.
CREATE TABLE audit_log (
    seq      BIGINT PRIMARY KEY CHECK (seq >= 0),
    chain_id BYTEA  NOT NULL,
    event    BYTEA  NOT NULL,
    mac      BYTEA  NOT NULL
);
