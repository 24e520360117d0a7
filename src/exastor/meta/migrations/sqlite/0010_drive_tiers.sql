-- A drive's tier (docs/design.md, "Placement"): 'capacity' drives hold the sealed stripes; 'buffer'
-- drives (serve --buffer-drive, drive add --buffer) hold only the replicated write buffer, the open
-- segments, so that small writes land on fast, high-endurance flash and the capacity flash is
-- written once, at the seal. Every drive of a store from before tiers is a capacity drive.
ALTER TABLE drives ADD COLUMN tier TEXT NOT NULL DEFAULT 'capacity';
