-- Master key steps after erasures (epochs.py, docs/privacy.md): the erasures each
-- master key covers, and their count, moved on by every statement deleting data keys.
ALTER TABLE master_keys ADD COLUMN IF NOT EXISTS erasures_seen bigint NOT NULL DEFAULT 0;
CREATE SEQUENCE IF NOT EXISTS erasure_count;
CREATE OR REPLACE FUNCTION count_erasure() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM gone) THEN
        PERFORM nextval('erasure_count');
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER conversation_keys_erased AFTER DELETE ON conversation_keys
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION count_erasure();
CREATE OR REPLACE TRIGGER files_erased AFTER DELETE ON files
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION count_erasure();
