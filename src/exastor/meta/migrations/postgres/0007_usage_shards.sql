-- Version 7: a bucket's usage is the sum of several rows (meta/contract.py, charge). With one row per
-- bucket every PUT into the bucket updated that row, and under REPEATABLE READ concurrent writers
-- of one row fail with a serialization failure and re-run: the bucket was a single-row hot spot.
-- Writers into a bucket without a quota now add to one of several rows (shard), chosen at random;
-- a bucket with a quota keeps charging shard 0, so its writers still serialize and none overshoots.
ALTER TABLE bucket_usage ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bucket_usage DROP CONSTRAINT bucket_usage_pkey;
ALTER TABLE bucket_usage ADD PRIMARY KEY (bucket, shard);
