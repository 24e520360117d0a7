-- Version 4: where each drive is, for placement by failure domain (drive < host < rack): a segment's
-- replicas and shards go to distinct hosts (docs/design.md, "Placement"). drives.path may now be a
-- drive server's URL (http://HOST:PORT/NAME). host '' is a drive in a directory of the host using it.
ALTER TABLE drives ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE drives ADD COLUMN rack TEXT NOT NULL DEFAULT '';
