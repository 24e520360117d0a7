-- Version 3: quotas, bucket usage and QoS limits (exastor quota / qos), the write-order index the
-- reducer walks, the store's identity (written in every drive's identity file) and shard
-- generations (every written shard file has a name of its own: docs/format.md).

-- write order: the reducer walks it from its cursor, and its backlog is what lies past the cursor
CREATE INDEX IF NOT EXISTS objects_seq ON objects (seq);

-- Capacity quotas (exastor quota; docs/operations.md, "Quotas"). A bucket's quota bounds that
-- bucket; a user's bounds all the buckets the user owns together.
CREATE TABLE IF NOT EXISTS quotas (
    scope       TEXT NOT NULL,                -- 'bucket' or 'user'
    name        TEXT NOT NULL,
    max_bytes   BIGINT,                       -- logical bytes (every version counted); NULL: no limit
    max_objects BIGINT,                       -- object versions holding data; NULL: no limit
    PRIMARY KEY (scope, name)
);

-- What each bucket holds: logical bytes and object versions (delete markers excluded), kept by
-- every transaction that adds or removes a version (meta/contract.py, charge). A missing row is
-- computed from the objects at the bucket's next write.
CREATE TABLE IF NOT EXISTS bucket_usage (
    bucket      TEXT PRIMARY KEY,
    bytes       BIGINT NOT NULL,
    objects     BIGINT NOT NULL
);

-- QoS rate limits (exastor qos; http/qos.py): token buckets per user or bucket, NULL = no limit.
CREATE TABLE IF NOT EXISTS qos_limits (
    scope          TEXT NOT NULL,             -- 'bucket' or 'user'
    name           TEXT NOT NULL,
    requests_per_s DOUBLE PRECISION,
    requests_burst DOUBLE PRECISION,          -- NULL: one second's worth
    bytes_per_s    DOUBLE PRECISION,
    bytes_burst    DOUBLE PRECISION,
    PRIMARY KEY (scope, name)
);

-- The store's own settings: 'store_id' (hex), written in every drive's identity file (docs/format.md).
-- drives.path is now relative to the data directory when inside it, and drives.state may be 'offline'.
CREATE TABLE IF NOT EXISTS store_info (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);

-- The generation that names a shard's file (0: a shard written before generations).
ALTER TABLE shards ADD COLUMN gen BIGINT NOT NULL DEFAULT 0;
