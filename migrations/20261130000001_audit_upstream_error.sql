-- A cached answer handed out while AWS failed names the failure it stood in for.
-- NULL on every other row; the chain's canonical encoding covers it only when set, so rows
-- written before this column keep their hashes.
ALTER TABLE audit_events ADD COLUMN upstream_error text;
