-- exastor metadata schema, PostgreSQL, version 1: the tables of SQLite's versions 1-2
-- (../sqlite/) with PostgreSQL's types, and what many writers at once need:
--   * every name or key compared or ordered is TEXT COLLATE "C" (bytewise, as SQLite's BINARY and
--     S3's UTF-8 binary listing order), whatever the database's default collation;
--   * BYTEA for binary columns;
--   * sequences instead of counter rows (object write order) and MAX(id)+1 (segment ids);
--   * the invariants as constraints: one latest version per key, unique upload ids, reference
--     counts never negative, and foreign keys where a concurrent delete could otherwise orphan a row
--     (an object or upload in a deleted bucket, a part of an aborted upload): under snapshot
--     isolation the bodies' "is it still there?" reads cannot see a concurrent commit; the keys can.
-- Never edit a released migration: add the next one.

CREATE TABLE users (
    name        TEXT COLLATE "C" PRIMARY KEY,
    access_key  TEXT COLLATE "C" NOT NULL UNIQUE,
    secret_key  TEXT NOT NULL,
    created_ns  BIGINT NOT NULL
);

CREATE TABLE buckets (
    name        TEXT COLLATE "C" PRIMARY KEY,
    owner       TEXT COLLATE "C" NOT NULL,
    created_ns  BIGINT NOT NULL,
    region      TEXT NOT NULL,
    versioning  TEXT NOT NULL DEFAULT '',
    attrs       TEXT NOT NULL DEFAULT '{}'
);

CREATE SEQUENCE object_seq;  -- objects.seq: global write order, newest version of a key the highest

CREATE TABLE objects (
    bucket        TEXT COLLATE "C" NOT NULL REFERENCES buckets (name),
    key           TEXT COLLATE "C" NOT NULL,
    version_id    TEXT COLLATE "C" NOT NULL,
    seq           BIGINT NOT NULL,
    is_latest     INTEGER NOT NULL,
    delete_marker INTEGER NOT NULL DEFAULT 0,
    size          BIGINT NOT NULL,
    etag          TEXT NOT NULL,
    mtime_ns      BIGINT NOT NULL,
    owner         TEXT NOT NULL,
    attrs         TEXT NOT NULL DEFAULT '{}',
    manifest      BYTEA,
    PRIMARY KEY (bucket, key, version_id)
);
CREATE INDEX objects_live ON objects (bucket, key) WHERE is_latest = 1 AND delete_marker = 0;
CREATE INDEX objects_versions ON objects (bucket, key, seq);
CREATE UNIQUE INDEX objects_one_latest ON objects (bucket, key) WHERE is_latest = 1;

CREATE TABLE uploads (
    upload_id    TEXT COLLATE "C" PRIMARY KEY,
    bucket       TEXT COLLATE "C" NOT NULL REFERENCES buckets (name),
    key          TEXT COLLATE "C" NOT NULL,
    initiated_ns BIGINT NOT NULL,
    owner        TEXT NOT NULL,
    attrs        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX uploads_by_key ON uploads (bucket, key, initiated_ns);

CREATE TABLE parts (
    upload_id   TEXT COLLATE "C" NOT NULL REFERENCES uploads (upload_id),
    part_number INTEGER NOT NULL,
    size        BIGINT NOT NULL,
    etag        TEXT NOT NULL,
    mtime_ns    BIGINT NOT NULL,
    attrs       TEXT NOT NULL DEFAULT '{}',
    manifest    BYTEA,
    PRIMARY KEY (upload_id, part_number)
);

CREATE TABLE chunks (
    fp            BYTEA PRIMARY KEY,
    segment       BIGINT NOT NULL,
    "offset"      BIGINT NOT NULL,
    stored_len    INTEGER NOT NULL,
    raw_len       INTEGER NOT NULL,
    codec         INTEGER NOT NULL,
    refs          BIGINT NOT NULL CHECK (refs >= 0),
    dead_since_ns BIGINT
);
CREATE INDEX chunks_by_segment ON chunks (segment);

CREATE SEQUENCE segments_id_seq;

CREATE TABLE segments (
    id         BIGINT PRIMARY KEY,
    state      TEXT NOT NULL,
    size       BIGINT NOT NULL DEFAULT 0,
    created_ns BIGINT NOT NULL
);

-- Settings and cursors of the services (reducer cursor, erasure geometry), and bucket_version.
-- Never a per-write counter: those are sequences here.
CREATE TABLE counters (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('bucket_version', 0);

-- Every gateway caches bucket rows until bucket_version moves: a commit that moves it notifies
-- every listening gateway (meta/postgres.py), so none has to poll the row.
CREATE FUNCTION exastor_notify_bucket_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('exastor_bucket_version', NEW.value::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER counters_bucket_version AFTER UPDATE ON counters
    FOR EACH ROW WHEN (NEW.name = 'bucket_version') EXECUTE FUNCTION exastor_notify_bucket_version();

-- --- Azure Blob-only state -------------------------------------------------------------------

CREATE TABLE blob_blocks (
    bucket      TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    block_id    TEXT COLLATE "C" NOT NULL,
    size        BIGINT NOT NULL,
    md5         TEXT NOT NULL,
    created_ns  BIGINT NOT NULL,
    manifest    BYTEA,
    PRIMARY KEY (bucket, key, block_id)
);
CREATE INDEX blob_blocks_age ON blob_blocks (created_ns);

CREATE TABLE blob_snapshots (
    bucket      TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    snapshot    TEXT COLLATE "C" NOT NULL,
    size        BIGINT NOT NULL,
    etag        TEXT NOT NULL,
    mtime_ns    BIGINT NOT NULL,
    attrs       TEXT NOT NULL DEFAULT '{}',
    manifest    BYTEA,
    PRIMARY KEY (bucket, key, snapshot)
);

CREATE TABLE blob_deleted (
    bucket      TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    snapshot    TEXT COLLATE "C" NOT NULL,
    deleted_ns  BIGINT NOT NULL,
    purge_ns    BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    etag        TEXT NOT NULL,
    mtime_ns    BIGINT NOT NULL,
    attrs       TEXT NOT NULL DEFAULT '{}',
    manifest    BYTEA,
    PRIMARY KEY (bucket, key, snapshot)
);

CREATE TABLE blob_leases (
    bucket      TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    lease_id    TEXT NOT NULL,
    duration    INTEGER NOT NULL,
    expires_ns  BIGINT,
    state       TEXT NOT NULL,
    break_ns    BIGINT,
    PRIMARY KEY (bucket, key)
);

CREATE TABLE blob_settings (
    name        TEXT COLLATE "C" PRIMARY KEY,
    value       TEXT NOT NULL
);

-- --- Drives and redundancy -------------------------------------------------------------------

CREATE TABLE drives (
    id          INTEGER PRIMARY KEY,
    path        TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    changed_ns  BIGINT NOT NULL
);

CREATE TABLE segment_layout (
    segment     BIGINT PRIMARY KEY,
    k           INTEGER NOT NULL,
    m           INTEGER NOT NULL,
    shard_len   BIGINT NOT NULL,
    data_len    BIGINT NOT NULL
);

CREATE TABLE replicas (
    segment     BIGINT NOT NULL,
    drive       INTEGER NOT NULL,
    PRIMARY KEY (segment, drive)
);

CREATE TABLE shards (
    segment     BIGINT NOT NULL,
    idx         INTEGER NOT NULL,
    drive       INTEGER NOT NULL,
    state       TEXT NOT NULL,
    gen         BIGINT NOT NULL DEFAULT 0,    -- names the file (0: a shard written before generations)
    PRIMARY KEY (segment, idx)
);
CREATE INDEX shards_by_drive ON shards (drive);

-- --- Similarity-delta reduction --------------------------------------------------------------

CREATE TABLE sketches (
    fp            BYTEA PRIMARY KEY,
    seq           BIGINT NOT NULL,
    sf0 BIGINT NOT NULL, sf1 BIGINT NOT NULL, sf2 BIGINT NOT NULL, sf3 BIGINT NOT NULL,
    pos0 INTEGER NOT NULL, pos1 INTEGER NOT NULL, pos2 INTEGER NOT NULL, pos3 INTEGER NOT NULL,
    owner_bucket  TEXT COLLATE "C" NOT NULL,
    owner_key     TEXT COLLATE "C" NOT NULL,
    owner_version TEXT COLLATE "C" NOT NULL,
    owner_offset  BIGINT NOT NULL,
    depth         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sketches_sf0 ON sketches (sf0, seq);
CREATE INDEX sketches_sf1 ON sketches (sf1, seq);
CREATE INDEX sketches_sf2 ON sketches (sf2, seq);
CREATE INDEX sketches_sf3 ON sketches (sf3, seq);

CREATE TABLE reduced_chunks (
    fp            BYTEA PRIMARY KEY,
    codec         INTEGER NOT NULL,
    plain_len     INTEGER NOT NULL,
    grouped_len   INTEGER NOT NULL,
    depth         INTEGER NOT NULL DEFAULT 0,
    manifest      BYTEA
);

CREATE TABLE delta_bases (
    base          BYTEA NOT NULL,
    fp            BYTEA NOT NULL,
    PRIMARY KEY (base, fp)
);
CREATE INDEX delta_bases_by_fp ON delta_bases (fp);

-- write order: the reducer walks it from its cursor, and its backlog is what lies past the cursor
CREATE INDEX objects_seq ON objects (seq);

-- Capacity quotas (exastor quota; docs/operations.md, "Quotas").
CREATE TABLE quotas (
    scope       TEXT COLLATE "C" NOT NULL,    -- 'bucket' or 'user'
    name        TEXT COLLATE "C" NOT NULL,
    max_bytes   BIGINT,
    max_objects BIGINT,
    PRIMARY KEY (scope, name)
);

-- What each bucket holds (meta/contract.py, charge).
CREATE TABLE bucket_usage (
    bucket      TEXT COLLATE "C" PRIMARY KEY,
    bytes       BIGINT NOT NULL,
    objects     BIGINT NOT NULL
);

-- QoS rate limits (exastor qos; http/qos.py).
CREATE TABLE qos_limits (
    scope          TEXT COLLATE "C" NOT NULL,
    name           TEXT COLLATE "C" NOT NULL,
    requests_per_s DOUBLE PRECISION,
    requests_burst DOUBLE PRECISION,
    bytes_per_s    DOUBLE PRECISION,
    bytes_burst    DOUBLE PRECISION,
    PRIMARY KEY (scope, name)
);

-- The store's own settings: 'store_id' (hex), written in every drive's identity file.
CREATE TABLE store_info (
    name        TEXT COLLATE "C" PRIMARY KEY,
    value       TEXT NOT NULL
);
