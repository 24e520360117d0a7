-- Version 8: membership and the cluster manager's lease (docs/design.md, "Membership and the cluster
-- manager"; meta/members.py). One row per gateway (its own heartbeat) and per drive server (the
-- manager's probe answered); times are the database's clock in ms since the Unix epoch. `state` is
-- 'alive' or 'down' (the manager's verdict). service_leases: singleton roles (the cluster manager),
-- each held by one process at a time under an epoch that only grows.
CREATE TABLE IF NOT EXISTS members (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    address     TEXT NOT NULL,
    started_ms  BIGINT NOT NULL,
    seen_ms     BIGINT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'alive'
);
CREATE TABLE IF NOT EXISTS service_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    epoch       BIGINT NOT NULL CHECK (epoch > 0),
    expires_ms  BIGINT NOT NULL
);
