-- The audit log becomes a tamper-evident hash chain kept in monthly partitions.
--
-- Every row carries its place in the chain (`id`: 1, 2, 3, ... with no gaps, assigned by the
-- writer under a transaction-scoped advisory lock, so several replicas still write one
-- chain), the previous row's hash, and its own: HMAC-SHA256 under a chain key the database
-- never sees, over the previous hash and the row's canonical content. An edited, deleted,
-- inserted or reordered row breaks the chain at that row (`ecr-token-broker audit verify`).
--
-- `recorded_at` is the time the writer inserted the row; it never decreases along the chain,
-- so each monthly partition holds one contiguous stretch of it and whole months can be
-- dropped (`audit prune`) while a checkpoint keeps the rest verifiable.
--
-- Rows written before this migration stay, append-only, in audit_events_unchained.
ALTER TABLE audit_events RENAME TO audit_events_unchained;
ALTER INDEX audit_events_pkey RENAME TO audit_events_unchained_pkey;
ALTER INDEX audit_events_occurred_at RENAME TO audit_events_unchained_occurred_at;
ALTER INDEX audit_events_subject RENAME TO audit_events_unchained_subject;
ALTER INDEX audit_events_request_id RENAME TO audit_events_unchained_request_id;
ALTER INDEX audit_events_token_fingerprints RENAME TO audit_events_unchained_token_fingerprints;

CREATE TABLE audit_events (
    id                  bigint      NOT NULL,
    recorded_at         timestamptz NOT NULL,
    occurred_at         timestamptz NOT NULL,
    request_id          text        NOT NULL,
    outcome             text        NOT NULL CHECK (outcome IN ('issued', 'denied', 'error')),
    reason              text        NOT NULL,
    http_status         smallint    NOT NULL,
    issuer              text,
    subject             text,
    rule                text,
    role_arn            text,
    session_name        text,
    regions             text[]      NOT NULL,
    registry_ids        text[]      NOT NULL,
    access              text        CHECK (access IN ('pull', 'push')),
    repositories        text[],
    session_tags        jsonb,
    proxy_endpoints     text[]      NOT NULL,
    expires_at          timestamptz,
    token_fingerprints  text[]      NOT NULL,
    fingerprint_key_id  text,
    from_cache          boolean     NOT NULL,
    client_addr         inet,
    user_agent          text,
    latency_ms          integer     NOT NULL,
    prev_hash           bytea       NOT NULL CHECK (length(prev_hash) = 32),
    row_hash            bytea       NOT NULL CHECK (length(row_hash) = 32),
    PRIMARY KEY (id, recorded_at),
    CHECK (outcome <> 'issued' OR (cardinality(token_fingerprints) > 0 AND fingerprint_key_id IS NOT NULL))
) PARTITION BY RANGE (recorded_at);

-- Catches rows beyond the partitions created ahead of time (see audit_ensure_partitions).
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

CREATE INDEX audit_events_subject ON audit_events (issuer, subject, id DESC);
CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at DESC);
CREATE INDEX audit_events_request_id ON audit_events (request_id);
CREATE INDEX audit_events_token_fingerprints ON audit_events USING gin (token_fingerprints);

CREATE TRIGGER audit_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();

-- Where a pruned stretch of the chain ended: verification resumes from here.
CREATE TABLE audit_checkpoints (
    id              bigint      PRIMARY KEY,   -- the last pruned row's id
    row_hash        bytea       NOT NULL CHECK (length(row_hash) = 32),
    pruned_before   timestamptz NOT NULL,
    pruned_rows     bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Creates the monthly partitions from the current month to `months_ahead` months ahead;
-- idempotent. `migrate` calls it; run `migrate` at least monthly (deploy/k8s has a CronJob).
CREATE FUNCTION audit_ensure_partitions(months_ahead integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    name text;
BEGIN
    FOR i IN 0..months_ahead LOOP
        name := format('audit_events_%s', to_char(month, 'YYYY_MM'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
                name, month::timestamp AT TIME ZONE 'UTC', (month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
        END IF;
        month := (month + interval '1 month')::date;
    END LOOP;
END;
$$;

SELECT audit_ensure_partitions(3);

-- The service's database role may add and read audit rows, nothing else. The login role the
-- service connects with is made a member of it (see README, "Database roles").
DO $$
BEGIN
    CREATE ROLE ecr_token_broker_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END;
$$;
GRANT SELECT, INSERT ON audit_events TO ecr_token_broker_app;
GRANT SELECT ON audit_checkpoints TO ecr_token_broker_app;
GRANT SELECT ON audit_events_unchained TO ecr_token_broker_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_events_unchained, audit_checkpoints FROM ecr_token_broker_app;
