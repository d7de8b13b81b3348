-- A request may now ask for several regions at once, and sessions carry tags.
-- Changing the column's type rewrites the table without firing the append-only row triggers;
-- existing rows keep their region as a one-element array.
ALTER TABLE audit_events
    ALTER COLUMN region TYPE text[] USING (CASE WHEN region IS NULL THEN '{}'::text[] ELSE ARRAY[region] END);
ALTER TABLE audit_events RENAME COLUMN region TO regions;
ALTER TABLE audit_events
    ALTER COLUMN regions SET DEFAULT '{}',
    ALTER COLUMN regions SET NOT NULL,
    -- Session tags sent to STS, as {"key": "value"}; NULL when the rule sets none.
    ADD COLUMN session_tags jsonb;

COMMENT ON COLUMN audit_events.access IS 'pull or push, as the session policy granted';
COMMENT ON COLUMN audit_events.repositories IS 'repository patterns the session policy granted';
