-- Version 7: segment write leases (docs/design.md, "Leases and fencing"; meta/leases.py). An open
-- segment is written by the one process holding its lease; `epoch` only grows (each take is one
-- transaction), travels with every append to the segment's replica files, and the drives refuse
-- older ones (docs/format.md, "Segment write leases"). `expires_ms` is the database's clock (ms
-- since the Unix epoch), so gateways on hosts whose clocks disagree agree on who holds a lease.
-- The row goes when the segment is sealed or deleted.
CREATE TABLE IF NOT EXISTS segment_leases (
    segment     INTEGER PRIMARY KEY,
    holder      TEXT NOT NULL,
    epoch       BIGINT NOT NULL CHECK (epoch > 0),
    expires_ms  BIGINT NOT NULL
);
