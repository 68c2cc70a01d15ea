-- Disappearing messages, delete for everyone, sealed bodies (contract v1.1,
-- docs/privacy.md): each message's expiry (stamped at send) and sealed body,
-- each conversation's timer, and the record of files to unlink. schema.sql
-- holds the same (its ALTERs already ran before this file on an old database).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS expires_at timestamptz;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS sealed_body bytea;
ALTER TABLE messages ALTER COLUMN body SET DEFAULT '';
CREATE INDEX IF NOT EXISTS messages_expiry_idx ON messages (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS conversation_timers (
    low_user_id   bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    high_user_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seconds       integer NOT NULL CHECK (seconds BETWEEN 0 AND 2419200),
    set_by        bigint REFERENCES users (id) ON DELETE SET NULL,
    set_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (low_user_id, high_user_id),
    CHECK (low_user_id < high_user_id)
);

CREATE TABLE IF NOT EXISTS doomed_files (
    path       text PRIMARY KEY,
    doomed_at  timestamptz NOT NULL DEFAULT now()
);
