-- Checkpoints are keyed: `hmac` is HMAC-SHA256 under the chain key (which the database never
-- sees) over the checkpoint's id, row hash, cut-off and row count, written by `audit prune`
-- and checked by `audit verify` and by the writer before it continues the chain from a
-- checkpoint. Without it, anyone with access to the database could drop the oldest rows
-- behind a made-up checkpoint. Checkpoints written before this column have none and are
-- refused like forged ones.
ALTER TABLE audit_checkpoints
    ADD COLUMN hmac bytea CHECK (hmac IS NULL OR length(hmac) = 32);
