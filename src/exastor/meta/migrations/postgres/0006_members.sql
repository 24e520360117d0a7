-- Version 6: membership and the cluster manager's lease (as SQLite's 0008_members.sql;
-- meta/members.py). Times are PostgreSQL's clock (clock_timestamp()) in ms since the Unix epoch.
CREATE TABLE members (
    id          TEXT COLLATE "C" PRIMARY KEY,
    kind        TEXT NOT NULL,
    address     TEXT NOT NULL,
    started_ms  BIGINT NOT NULL,
    seen_ms     BIGINT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'alive'
);
CREATE TABLE service_leases (
    name        TEXT COLLATE "C" PRIMARY KEY,
    holder      TEXT COLLATE "C" NOT NULL,
    epoch       BIGINT NOT NULL CHECK (epoch > 0),
    expires_ms  BIGINT NOT NULL
);
