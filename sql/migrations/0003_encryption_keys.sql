-- Encryption at rest (docs/privacy.md): the ids of the master keys in use,
-- each conversation's data key and each file's, wrapped by a master key.
-- The master keys themselves never enter the database.
CREATE TABLE IF NOT EXISTS master_keys (
    id          text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS conversation_keys (
    low_user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    high_user_id   bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    wrapped_key    bytea NOT NULL,
    master_key_id  text NOT NULL CONSTRAINT conversation_keys_master_key_fk REFERENCES master_keys (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (low_user_id, high_user_id),
    CHECK (low_user_id < high_user_id)
);
CREATE INDEX IF NOT EXISTS conversation_keys_high_idx ON conversation_keys (high_user_id);
CREATE INDEX IF NOT EXISTS conversation_keys_master_key_idx ON conversation_keys (master_key_id);

ALTER TABLE files ADD COLUMN IF NOT EXISTS wrapped_key bytea;
ALTER TABLE files ADD COLUMN IF NOT EXISTS master_key_id text
    CONSTRAINT files_master_key_fk REFERENCES master_keys (id);
CREATE INDEX IF NOT EXISTS files_master_key_idx ON files (master_key_id);
