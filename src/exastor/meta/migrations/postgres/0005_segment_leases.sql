-- Version 5: segment write leases (as SQLite's 0007_segment_leases.sql; meta/leases.py). `epoch`
-- only grows: each take is one REPEATABLE READ transaction, so two racing takers cannot both
-- commit the same epoch. `expires_ms` is PostgreSQL's clock (clock_timestamp(), ms since the Unix
-- epoch), never a gateway's.
CREATE TABLE segment_leases (
    segment     BIGINT PRIMARY KEY,
    holder      TEXT COLLATE "C" NOT NULL,
    epoch       BIGINT NOT NULL CHECK (epoch > 0),
    expires_ms  BIGINT NOT NULL
);
