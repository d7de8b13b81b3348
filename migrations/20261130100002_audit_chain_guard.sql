-- The chain cannot fork, whoever writes to it: every INSERT into audit_events must continue
-- the chain exactly where it ends. `audit_chain_head` holds the last id appended; a
-- statement trigger checks that the ids a statement inserts are consecutive, distinct and
-- start right after it, and moves it on. Two writers that read the same head (a transaction
-- that took its snapshot before the writers' lock, a bug, a second chain) cannot both
-- succeed: the second one's UPDATE finds the head moved (or, under REPEATABLE READ, fails to
-- serialize), and its whole statement is refused.
--
-- A table keyed by every id would do the same at one more index entry per row; this costs
-- one row update per batch. (audit_events is partitioned by recorded_at, so its primary key
-- cannot be the id alone.)
CREATE TABLE audit_chain_head (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    id          bigint  NOT NULL
);

INSERT INTO audit_chain_head (id)
SELECT greatest(
    (SELECT coalesce(max(id), 0) FROM audit_events),
    (SELECT coalesce(max(id), 0) FROM audit_checkpoints));

CREATE FUNCTION audit_events_continue_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    first_id bigint;
    last_id  bigint;
    n        bigint;
    distinct_ids bigint;
BEGIN
    SELECT min(id), max(id), count(*), count(DISTINCT id)
        INTO first_id, last_id, n, distinct_ids FROM new_rows;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF distinct_ids <> n OR last_id - first_id + 1 <> n THEN
        RAISE EXCEPTION 'audit chain ids % to % are not % consecutive ids', first_id, last_id, n
            USING ERRCODE = 'unique_violation';
    END IF;
    UPDATE audit_chain_head SET id = last_id WHERE id = first_id - 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit chain id % does not continue the chain''s head', first_id
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NULL;
END;
$$;

-- It runs as its owner (the app role may not touch audit_chain_head), so it must find only
-- the tables it was created with, never a temporary table of the caller's.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION audit_events_continue_chain() SET search_path = %I, pg_temp',
                   current_schema());
END;
$$;
REVOKE ALL ON FUNCTION audit_events_continue_chain() FROM PUBLIC;

CREATE TRIGGER audit_events_one_chain
    AFTER INSERT ON audit_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_continue_chain();
