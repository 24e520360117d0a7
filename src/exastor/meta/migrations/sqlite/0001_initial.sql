-- exastor metadata schema, SQLite, version 1: the schema every store had before versions were kept
-- (meta/migrations/__init__.py). Every statement is idempotent, so a store from before applies it
-- unchanged and is then at version 1. Keys are TEXT compared bytewise (SQLite's BINARY collation).
-- Never edit a released migration: add the next one. PostgreSQL's schema: ../postgres/.

CREATE TABLE IF NOT EXISTS users (
    name        TEXT PRIMARY KEY,
    access_key  TEXT NOT NULL UNIQUE,
    secret_key  TEXT NOT NULL,
    created_ns  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS buckets (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    created_ns  BIGINT NOT NULL,
    region      TEXT NOT NULL,
    versioning  TEXT NOT NULL DEFAULT '',   -- '', 'Enabled', 'Suspended'
    attrs       TEXT NOT NULL DEFAULT '{}'  -- JSON: tagging, cors, policy, container metadata, ...
);

-- One row per object version. Unversioned objects have version_id 'null'.
CREATE TABLE IF NOT EXISTS objects (
    bucket        TEXT NOT NULL,
    key           TEXT NOT NULL,
    version_id    TEXT NOT NULL,
    seq           BIGINT NOT NULL,            -- global write order; newest version has the highest
    is_latest     INTEGER NOT NULL,
    delete_marker INTEGER NOT NULL DEFAULT 0,
    size          BIGINT NOT NULL,
    etag          TEXT NOT NULL,
    mtime_ns      BIGINT NOT NULL,
    owner         TEXT NOT NULL,
    attrs         TEXT NOT NULL DEFAULT '{}', -- JSON: content headers, user metadata, tags, checksums, parts
    manifest      BLOB,                       -- packed (fingerprint, start, length) entries
    PRIMARY KEY (bucket, key, version_id)
);
CREATE INDEX IF NOT EXISTS objects_live ON objects (bucket, key) WHERE is_latest = 1 AND delete_marker = 0;
CREATE INDEX IF NOT EXISTS objects_versions ON objects (bucket, key, seq);

CREATE TABLE IF NOT EXISTS uploads (
    upload_id    TEXT PRIMARY KEY,
    bucket       TEXT NOT NULL,
    key          TEXT NOT NULL,
    initiated_ns BIGINT NOT NULL,
    owner        TEXT NOT NULL,
    attrs        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, initiated_ns);

CREATE TABLE IF NOT EXISTS parts (
    upload_id   TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    size        BIGINT NOT NULL,
    etag        TEXT NOT NULL,
    mtime_ns    BIGINT NOT NULL,
    attrs       TEXT NOT NULL DEFAULT '{}',
    manifest    BLOB,
    PRIMARY KEY (upload_id, part_number)
);

-- The chunk index: where each distinct chunk lives, and how many manifest entries point at it.
CREATE TABLE IF NOT EXISTS chunks (
    fp            BLOB PRIMARY KEY,           -- BLAKE3-256 of the raw chunk
    segment       BIGINT NOT NULL,
    "offset"      BIGINT NOT NULL,            -- of the record header in the segment
    stored_len    INTEGER NOT NULL,           -- payload bytes on disk
    raw_len       INTEGER NOT NULL,
    codec         INTEGER NOT NULL,
    refs          BIGINT NOT NULL,
    dead_since_ns BIGINT                      -- set when refs drops to 0; reaped after a grace period
);
CREATE INDEX IF NOT EXISTS chunks_by_segment ON chunks (segment);

CREATE TABLE IF NOT EXISTS segments (
    id         BIGINT PRIMARY KEY,
    state      TEXT NOT NULL,                 -- 'open', 'sealed', 'deleted'
    size       BIGINT NOT NULL DEFAULT 0,
    created_ns BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

-- --- Azure Blob-only state (the Blob front-end; S3 never reads these) ------------------------
-- Every manifest below holds chunk references counted in chunks.refs, like objects and parts.

-- Uncommitted blocks (Put Block), per blob; discarded at commit or after 7 days.
CREATE TABLE IF NOT EXISTS blob_blocks (
    bucket      TEXT NOT NULL,
    key         TEXT NOT NULL,
    block_id    TEXT NOT NULL,               -- base64 as the client sent it
    size        BIGINT NOT NULL,
    md5         TEXT NOT NULL,
    created_ns  BIGINT NOT NULL,
    manifest    BLOB,
    PRIMARY KEY (bucket, key, block_id)
);
CREATE INDEX IF NOT EXISTS blob_blocks_age ON blob_blocks (created_ns);

-- Read-only point-in-time copies of a blob (Snapshot Blob), named by their timestamp.
CREATE TABLE IF NOT EXISTS blob_snapshots (
    bucket      TEXT NOT NULL,
    key         TEXT NOT NULL,
    snapshot    TEXT NOT NULL,               -- e.g. 2026-11-27T05:13:26.1234567Z
    size        BIGINT NOT NULL,
    etag        TEXT NOT NULL,
    mtime_ns    BIGINT NOT NULL,
    attrs       TEXT NOT NULL DEFAULT '{}',
    manifest    BLOB,
    PRIMARY KEY (bucket, key, snapshot)
);

-- Soft-deleted blobs and snapshots, restorable by Undelete until purge_ns.
CREATE TABLE IF NOT EXISTS blob_deleted (
    bucket      TEXT NOT NULL,
    key         TEXT NOT NULL,
    snapshot    TEXT NOT NULL,               -- '' for the base blob
    deleted_ns  BIGINT NOT NULL,
    purge_ns    BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    etag        TEXT NOT NULL,
    mtime_ns    BIGINT NOT NULL,
    attrs       TEXT NOT NULL DEFAULT '{}',
    manifest    BLOB,
    PRIMARY KEY (bucket, key, snapshot)
);

-- Leases on containers (key '') and blobs.
CREATE TABLE IF NOT EXISTS blob_leases (
    bucket      TEXT NOT NULL,
    key         TEXT NOT NULL,
    lease_id    TEXT NOT NULL,
    duration    INTEGER NOT NULL,            -- seconds, -1 = infinite
    expires_ns  BIGINT,                      -- NULL: infinite
    state       TEXT NOT NULL,               -- 'leased', 'breaking', 'broken', 'released'
    break_ns    BIGINT,                      -- when a breaking lease becomes broken
    PRIMARY KEY (bucket, key)
);

-- Account-wide Blob settings (service properties as their XML, ...).
CREATE TABLE IF NOT EXISTS blob_settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);

-- --- Drives and redundancy (docs/format.md, "Redundancy") -------------------------------------
-- Shared by every worker process: drive health and where each segment's bytes live.

CREATE TABLE IF NOT EXISTS drives (
    id          INTEGER PRIMARY KEY,          -- 0 is the first drive (DATA/drive0 by default)
    path        TEXT NOT NULL UNIQUE,         -- absolute directory of the drive
    state       TEXT NOT NULL,                -- 'active', 'full', 'readonly', 'failed', 'draining', 'removed'
    reason      TEXT NOT NULL DEFAULT '',     -- why it left 'active' (the error seen)
    changed_ns  BIGINT NOT NULL
);

-- How a segment is stored. No row: a segment from before drives existed, a plain file on drive 0.
CREATE TABLE IF NOT EXISTS segment_layout (
    segment     BIGINT PRIMARY KEY,
    k           INTEGER NOT NULL,             -- data shards (1 while replicated)
    m           INTEGER NOT NULL,             -- parity shards; an open segment has m+1 replicas
    shard_len   BIGINT NOT NULL,              -- 0: whole-segment replicas (open, or sealed with k=1, m=0)
    data_len    BIGINT NOT NULL               -- segment bytes before padding (0 while open)
);

-- Whole-segment replicas (an open segment's write buffer).
CREATE TABLE IF NOT EXISTS replicas (
    segment     BIGINT NOT NULL,
    drive       INTEGER NOT NULL,
    PRIMARY KEY (segment, drive)
);

-- Shards of sealed, erasure-coded segments: 0..k-1 data, k..k+m-1 parity.
CREATE TABLE IF NOT EXISTS shards (
    segment     BIGINT NOT NULL,
    idx         INTEGER NOT NULL,
    drive       INTEGER NOT NULL,
    state       TEXT NOT NULL,                -- 'ok', 'bad' (queued for repair)
    PRIMARY KEY (segment, idx)
);
CREATE INDEX IF NOT EXISTS shards_by_drive ON shards (drive);

-- --- Similarity-delta reduction (services/reducer.py; docs/reduction.md) -----------------------

-- The sketch index: chunks the reducer evaluated that may serve as delta references (depth below
-- the maximum), with the object and offset where it first saw them (to align a reference).
CREATE TABLE IF NOT EXISTS sketches (
    fp            BLOB PRIMARY KEY,
    seq           BIGINT NOT NULL,            -- evaluation order: later candidates win ties
    sf0 BIGINT NOT NULL, sf1 BIGINT NOT NULL, sf2 BIGINT NOT NULL, sf3 BIGINT NOT NULL,
    pos0 INTEGER NOT NULL, pos1 INTEGER NOT NULL, pos2 INTEGER NOT NULL, pos3 INTEGER NOT NULL,
    owner_bucket  TEXT NOT NULL,
    owner_key     TEXT NOT NULL,
    owner_version TEXT NOT NULL,
    owner_offset  BIGINT NOT NULL,
    depth         INTEGER NOT NULL DEFAULT 0  -- 0: not a delta; n: a delta whose deepest base has depth n-1
);
CREATE INDEX IF NOT EXISTS sketches_sf0 ON sketches (sf0, seq);
CREATE INDEX IF NOT EXISTS sketches_sf1 ON sketches (sf1, seq);
CREATE INDEX IF NOT EXISTS sketches_sf2 ON sketches (sf2, seq);
CREATE INDEX IF NOT EXISTS sketches_sf3 ON sketches (sf3, seq);

-- Chunks the reducer re-encoded (codec 2 grouped, 3 delta): their sizes before, for the stats
-- split, and for deltas the reference slices they depend on. Each entry of `manifest` holds one
-- reference in chunks.refs (like an object's manifest), so a base is never reclaimed while a
-- delta needs it; the row goes (and releases them) once its chunk is gone or re-written plain.
CREATE TABLE IF NOT EXISTS reduced_chunks (
    fp            BLOB PRIMARY KEY,
    codec         INTEGER NOT NULL,
    plain_len     INTEGER NOT NULL,           -- stored_len as first written (zstd-1 or raw)
    grouped_len   INTEGER NOT NULL,           -- with byte grouping alone (= plain_len when it did not pay)
    depth         INTEGER NOT NULL DEFAULT 0, -- delta chain depth (1 + deepest base); 0 for grouped
    manifest      BLOB                        -- delta references (40-byte entries); NULL when not a delta
);
-- base -> deltas depending on it: a base is never itself turned into a delta later, so a chunk's
-- depth never changes after it is written and chains stay within similarity.MAX_DEPTH.
CREATE TABLE IF NOT EXISTS delta_bases (
    base          BLOB NOT NULL,
    fp            BLOB NOT NULL,
    PRIMARY KEY (base, fp)
);
CREATE INDEX IF NOT EXISTS delta_bases_by_fp ON delta_bases (fp);
