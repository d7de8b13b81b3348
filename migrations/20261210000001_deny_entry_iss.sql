-- A stored deny entry names its issuer by the name the config gives it, which a config
-- change may rename; the issuer's `iss` (the exact claim of its tokens) does not change
-- under a rename, so new entries record it too and are matched by it. Entries stored before
-- this column have it NULL: the migration cannot know the config, so each replica resolves
-- them by name against the config it runs, and one whose name it no longer knows is applied
-- by its other fields (it denies more, never less).
ALTER TABLE deny_entries ADD COLUMN iss text;

-- Covered by the table's INSERT and SELECT grants; the service still may not UPDATE it, so
-- what an entry matches is never rewritten.
