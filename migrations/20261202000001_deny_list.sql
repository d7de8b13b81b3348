-- The stored deny list (the kill switch without a config change): entries added through
-- POST /v1/admin/deny, read by every replica every few seconds. An entry is never deleted:
-- a removal is recorded on it, so the list keeps who denied whom, and who lifted it.
CREATE TABLE deny_entries (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- What it matches, in the config's [[deny]] grammar: the issuer's configured name, the
    -- subject's patterns and claim matchers as JSON, the caller's first matching rule.
    issuer             text        NOT NULL,
    subject            jsonb,
    rule               text,
    claims             jsonb       NOT NULL DEFAULT '{}',
    reason             text        NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    expires_at         timestamptz,
    added_at           timestamptz NOT NULL DEFAULT now(),
    added_by_issuer    text        NOT NULL,
    added_by_subject   text        NOT NULL,
    request_id         text        NOT NULL,
    removed_at         timestamptz,
    removed_by_issuer  text,
    removed_by_subject text,
    CHECK (subject IS NOT NULL OR claims <> '{}'::jsonb),
    CHECK ((removed_at IS NULL) = (removed_by_issuer IS NULL)
       AND (removed_at IS NULL) = (removed_by_subject IS NULL))
);

CREATE INDEX deny_entries_in_force ON deny_entries (id) WHERE removed_at IS NULL;

-- The service adds, reads and marks entries removed; it can neither rewrite what an entry
-- matches nor who added it, nor delete one.
GRANT SELECT, INSERT ON deny_entries TO ecr_token_broker_app;
GRANT UPDATE (removed_at, removed_by_issuer, removed_by_subject) ON deny_entries TO ecr_token_broker_app;
REVOKE DELETE, TRUNCATE ON deny_entries FROM ecr_token_broker_app;

-- Deny list changes are recorded in the audit chain too, as outcome 'admin'. The check
-- being replaced got its name when the table was rebuilt, so it is found by what it says.
DO $$
DECLARE
    old_check name;
BEGIN
    FOR old_check IN
        SELECT conname FROM pg_constraint
         WHERE conrelid = 'audit_events'::regclass AND contype = 'c' AND conparentid = 0
           AND pg_get_constraintdef(oid) LIKE '%outcome = ANY%'
    LOOP
        EXECUTE format('ALTER TABLE audit_events DROP CONSTRAINT %I', old_check);
    END LOOP;
END;
$$;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_known_outcome
    CHECK (outcome IN ('issued', 'denied', 'error', 'admin'));
