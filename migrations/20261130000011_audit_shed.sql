-- An aggregate row counts the refusals shed under pressure instead of being written one by
-- one: how many, over which interval, from which client addresses and why. NULL on every
-- other row; the chain's canonical encoding covers it only when set, so rows written before
-- this column keep their hashes.
ALTER TABLE audit_events ADD COLUMN shed jsonb;
