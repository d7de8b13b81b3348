-- The request id of a row is always the service's own; the `x-request-id` a caller sent is
-- kept beside it, so that no caller can give its row another request's id. NULL when the
-- caller sent none (and on every row written before this column); the chain's canonical
-- encoding covers it only when set, so older rows keep their hashes.
ALTER TABLE audit_events ADD COLUMN caller_request_id text;
