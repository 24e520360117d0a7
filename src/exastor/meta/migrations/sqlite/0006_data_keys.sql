-- Version 6: encryption at rest (docs/security.md, "Encryption at rest"; docs/format.md, "Encrypted
-- records"). The store's data keys (DEKs), each sealed under the master key (meta/sealing.py) and
-- never in the clear here. A record names the key that encrypted it (its header's key id = `id`);
-- 0 is never an id (it means "plaintext"). Keys are never deleted: records written under an old key
-- stay readable after `exastor key rotate` made a new one for new writes.
CREATE TABLE IF NOT EXISTS data_keys (
    id          INTEGER PRIMARY KEY CHECK (id > 0),
    wrapped     TEXT NOT NULL,                -- enc1:<master key id>:<base64>: the 32-byte key, sealed
    created_ns  BIGINT NOT NULL
);
-- store_info gains 'encrypt_at_rest' ('1': new records are encrypted under the newest key; '0' or
-- absent: plaintext, a store from before this version) and 'all_encrypted' ('1': the store has
-- encrypted every record since it was made, so every object's bytes are encrypted).
