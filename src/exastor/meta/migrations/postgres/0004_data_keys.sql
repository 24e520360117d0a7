-- Version 4: encryption at rest (as SQLite's 0006_data_keys.sql; docs/security.md). The store's
-- data keys, each sealed under the master key; a record's header names the key id (0 = plaintext).
CREATE TABLE data_keys (
    id          BIGINT PRIMARY KEY CHECK (id > 0),
    wrapped     TEXT NOT NULL,
    created_ns  BIGINT NOT NULL
);
