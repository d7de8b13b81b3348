-- One row per decision the broker makes on an issuing request: issued, denied or error.
-- Tokens are never stored; only keyed fingerprints (HMAC-SHA256, hex) with the key's id.
CREATE TABLE audit_events (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    region              text,
    registry_ids        text[]      NOT NULL DEFAULT '{}',
    -- What a session policy granted; NULL while the role's own permissions apply unnarrowed.
    access              text        CHECK (access IN ('pull', 'push')),
    repositories        text[],
    proxy_endpoints     text[]      NOT NULL DEFAULT '{}',
    expires_at          timestamptz,
    token_fingerprints  text[]      NOT NULL DEFAULT '{}',
    fingerprint_key_id  text,
    from_cache          boolean     NOT NULL DEFAULT false,
    client_addr         inet,
    user_agent          text,
    latency_ms          integer     NOT NULL,
    CHECK (outcome <> 'issued' OR (cardinality(token_fingerprints) > 0 AND fingerprint_key_id IS NOT NULL))
);

CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at DESC);
CREATE INDEX audit_events_subject ON audit_events (issuer, subject, id DESC);
CREATE INDEX audit_events_request_id ON audit_events (request_id);
CREATE INDEX audit_events_token_fingerprints ON audit_events USING gin (token_fingerprints);

-- Append-only, whoever is connected: rows can be added and read, never changed or removed.
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
