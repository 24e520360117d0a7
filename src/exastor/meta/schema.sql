-- exastor metadata schema. Portable SQL: runs on SQLite and PostgreSQL alike
-- (keys are TEXT compared bytewise: SQLite BINARY collation, PostgreSQL COLLATE "C").

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
