-- Version 9: a bucket's usage is the sum of its rows, one per shard (as PostgreSQL's
-- 0007_usage_shards.sql; meta/contract.py, charge). SQLite has one writer, so it only ever writes
-- shard 0: the column keeps one schema and one set of statements for both backends.
CREATE TABLE bucket_usage_sharded (
    bucket      TEXT NOT NULL,
    shard       INTEGER NOT NULL DEFAULT 0,
    bytes       BIGINT NOT NULL,
    objects     BIGINT NOT NULL,
    PRIMARY KEY (bucket, shard)
);
INSERT INTO bucket_usage_sharded (bucket, shard, bytes, objects) SELECT bucket, 0, bytes, objects FROM bucket_usage;
DROP TABLE bucket_usage;
ALTER TABLE bucket_usage_sharded RENAME TO bucket_usage;
