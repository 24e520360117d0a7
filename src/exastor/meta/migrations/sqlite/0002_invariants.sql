-- Version 2: the invariants the bodies rely on, enforced by the database itself (as on PostgreSQL).

-- One latest version per key.
CREATE UNIQUE INDEX IF NOT EXISTS objects_one_latest ON objects (bucket, key) WHERE is_latest = 1;

-- Reference counts never negative. SQLite cannot add a CHECK to a table: rebuild it (the
-- procedure of https://www.sqlite.org/lang_altertable.html, "other kinds of table schema changes").
-- A store whose counts are already wrong fails here and is left at version 1, untouched.
CREATE TABLE chunks_v2 (
    fp            BLOB PRIMARY KEY,           -- BLAKE3-256 of the raw chunk
    segment       BIGINT NOT NULL,
    "offset"      BIGINT NOT NULL,            -- of the record header in the segment
    stored_len    INTEGER NOT NULL,           -- payload bytes on disk
    raw_len       INTEGER NOT NULL,
    codec         INTEGER NOT NULL,
    refs          BIGINT NOT NULL CHECK (refs >= 0),
    dead_since_ns BIGINT                      -- set when refs drops to 0; reaped after a grace period
);
INSERT INTO chunks_v2 (fp, segment, "offset", stored_len, raw_len, codec, refs, dead_since_ns)
    SELECT fp, segment, "offset", stored_len, raw_len, codec, refs, dead_since_ns FROM chunks;
DROP TABLE chunks;
ALTER TABLE chunks_v2 RENAME TO chunks;
CREATE INDEX chunks_by_segment ON chunks (segment);

-- Bumped by every transaction that changes a bucket or an account setting: gateways cache bucket
-- rows until it moves (Runner.data_version), so object writes no longer empty those caches.
INSERT INTO counters (name, value) VALUES ('bucket_version', 0) ON CONFLICT (name) DO NOTHING;
