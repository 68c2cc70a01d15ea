-- Secure Link schema: the whole current schema, idempotent.
-- Bootstraps an empty database with plain `psql -f sql/schema.sql`, and is
-- what `secure-link db init` runs before any numbered file in sql/migrations/.
-- A later change adds sql/migrations/NNNN_name.sql AND updates this file,
-- adding NNNN to the versions at the end, so new and old databases agree.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- The SHA-256 of each schema.sql that `secure-link serve` has applied (db.apply_schema).
-- A start whose file is recorded skips it: this file's ALTER TABLE and CREATE INDEX
-- lock tables even when there is nothing to do, and a server starting beside busy
-- ones (a rolling restart) then made their sends wait, or deadlocked with them.
CREATE TABLE IF NOT EXISTS schema_digests (
    digest      text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- Usernames are stored NFKC-normalised and case-folded, so plain UNIQUE is
-- the case-insensitive uniqueness the contract asks for.
CREATE TABLE IF NOT EXISTS users (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL UNIQUE,
    display_name    text NOT NULL,
    phrase_hash     bytea NOT NULL,
    avatar_file_id  text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 of each token is stored: a database leak yields no usable session.
CREATE TABLE IF NOT EXISTS sessions (
    id            bigserial PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    user_agent    text NOT NULL DEFAULT '',
    address       text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_user_idx ON sessions (user_id);

-- Failed logins, shared by every worker; rows older than the window are pruned.
CREATE TABLE IF NOT EXISTS login_failures (
    id         bigserial PRIMARY KEY,
    username   text NOT NULL,
    address    text NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS login_failures_user_addr_idx ON login_failures (username, address, failed_at);
CREATE INDEX IF NOT EXISTS login_failures_addr_idx ON login_failures (address, failed_at);

-- Encryption at rest (docs/privacy.md): the ids of the master keys that wrap
-- the data keys below, never the keys themselves (those stay in
-- MASTER_KEY_FILE). A rotation deletes the old id only once no row names it.
CREATE TABLE IF NOT EXISTS master_keys (
    id             text PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    erasures_seen  bigint NOT NULL DEFAULT 0  -- erasure_count when registered (epochs.py)
);
ALTER TABLE master_keys ADD COLUMN IF NOT EXISTS erasures_seen bigint NOT NULL DEFAULT 0;

-- Uploaded files. `path` is relative to MEDIA_ROOT and built from the random id,
-- never from the user's file name, which is kept only as sanitised metadata.
-- `used_with` is the peer of the first message that carried an attachment:
-- a file can travel in one conversation only.
CREATE TABLE IF NOT EXISTS files (
    id              text PRIMARY KEY,
    owner_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose         text NOT NULL CHECK (purpose IN ('attachment', 'avatar')),
    path            text NOT NULL,
    thumbnail_path  text,
    name            text NOT NULL,
    content_type    text NOT NULL,
    size            bigint NOT NULL,
    width           integer,
    height          integer,
    sha256          text NOT NULL,
    used_with       bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS files_owner_idx ON files (owner_id, created_at);
-- The file's own data key, wrapped by a master key (NULL: stored before
-- encryption at rest, and served as stored); deleting the row destroys it.
-- Added by ALTER so that this file still runs on a database from before them.
ALTER TABLE files ADD COLUMN IF NOT EXISTS wrapped_key bytea;
ALTER TABLE files ADD COLUMN IF NOT EXISTS master_key_id text
    CONSTRAINT files_master_key_fk REFERENCES master_keys (id);
CREATE INDEX IF NOT EXISTS files_master_key_idx ON files (master_key_id);

DO $$ BEGIN
    ALTER TABLE users ADD CONSTRAINT users_avatar_fk
        FOREIGN KEY (avatar_file_id) REFERENCES files (id) ON DELETE SET NULL;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

-- Messages. Ids come from a sequence; chat.send_message takes an advisory lock
-- on both users before the id is drawn, so each user's messages commit in id
-- order and `sync` can never skip one (docs/decisions.md, "sync without gaps").
CREATE TABLE IF NOT EXISTS messages (
    id             bigserial PRIMARY KEY,
    sender_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    recipient_id   bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body           text NOT NULL DEFAULT '',  -- '': the body is sealed_body (rows before version 4 kept text)
    client_id      text,
    attachment_id  text REFERENCES files (id) ON DELETE SET NULL,
    sent_at        timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,  -- sent_at plus the conversation's timer then; NULL: never
    sealed_body    bytea,        -- AES-GCM under the conversation's key (bodies.py)
    CONSTRAINT messages_client_id_unique UNIQUE (sender_id, client_id)
);
-- Databases from before version 4 (the table above already existed there):
ALTER TABLE messages ADD COLUMN IF NOT EXISTS expires_at timestamptz;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS sealed_body bytea;
ALTER TABLE messages ALTER COLUMN body SET DEFAULT '';
CREATE INDEX IF NOT EXISTS messages_expiry_idx ON messages (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_pair_idx
    ON messages (LEAST(sender_id, recipient_id), GREATEST(sender_id, recipient_id), id);
CREATE INDEX IF NOT EXISTS messages_sender_idx ON messages (sender_id, id);
CREATE INDEX IF NOT EXISTS messages_recipient_idx ON messages (recipient_id, id);
CREATE INDEX IF NOT EXISTS messages_attachment_idx ON messages (attachment_id) WHERE attachment_id IS NOT NULL;

-- Every client_id a sender has used, for CLIENT_ID_MEMORY_DAYS (30) after its use, whether
-- its message still exists or not: a send retried after its message was deleted or expired
-- is answered 410 `gone` instead of being stored again (docs/api.md, "Retries"). Only a
-- keyed hash of (sender, client_id) and the day are kept: no one can tell whose it was.
CREATE TABLE IF NOT EXISTS used_client_ids (
    tag      bytea PRIMARY KEY,
    used_on  date NOT NULL DEFAULT current_date
);
CREATE INDEX IF NOT EXISTS used_client_ids_day_idx ON used_client_ids (used_on);

-- Every query that returns Messages reads this view, so the Message object is
-- built from the same columns everywhere (history, sync, conversations, retries),
-- and an expired message is never served, from the instant it expires, whether
-- the sweeper has deleted it yet or not.
CREATE OR REPLACE VIEW message_view AS
SELECT m.id, m.sender_id, m.recipient_id, s.username AS sender, r.username AS recipient,
       m.body, m.client_id, m.sent_at,
       f.id AS file_id, f.name AS file_name, f.content_type AS file_content_type,
       f.size AS file_size, f.width AS file_width, f.height AS file_height,
       f.thumbnail_path AS file_thumbnail_path,
       m.expires_at, m.sealed_body
FROM messages m
JOIN users s ON s.id = m.sender_id
JOIN users r ON r.id = m.recipient_id
LEFT JOIN files f ON f.id = m.attachment_id
WHERE m.expires_at IS NULL OR m.expires_at > now();

-- Each conversation's timer (contract v1.1), the pair lowest id first; no row: off.
CREATE TABLE IF NOT EXISTS conversation_timers (
    low_user_id   bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    high_user_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seconds       integer NOT NULL CHECK (seconds BETWEEN 0 AND 2419200),
    set_by        bigint REFERENCES users (id) ON DELETE SET NULL,
    set_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (low_user_id, high_user_id),
    CHECK (low_user_id < high_user_id)
);

-- Files whose rows are deleted (expired, deleted for everyone, cleared), in
-- the same commit, until they are gone from disk too: a process killed in
-- between leaves this record, and the next sweep unlinks the file.
CREATE TABLE IF NOT EXISTS doomed_files (
    path       text PRIMARY KEY,
    doomed_at  timestamptz NOT NULL DEFAULT now()
);

-- Each conversation's data key (message bodies), wrapped by a master key;
-- the pair is stored lowest id first. Logout deletes it before anything else.
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

-- Read receipts: how far `user_id` has read the conversation with `peer_id`.
CREATE TABLE IF NOT EXISTS conversation_reads (
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    peer_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_read_id  bigint NOT NULL,
    PRIMARY KEY (user_id, peer_id)
);

-- Presence across workers: each worker heartbeats; its connections vanish with it.
CREATE TABLE IF NOT EXISTS workers (
    id            uuid PRIMARY KEY,
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS live_connections (
    id         uuid PRIMARY KEY,
    worker_id  uuid NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    opened_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS live_connections_user_idx ON live_connections (user_id);

-- Fan-out payloads too large for NOTIFY's 8,000 bytes wait here a few seconds
-- (housekeeping prunes them), with the channels they went to, so that logout's
-- clearing deletes the parked copies of what it erases.
CREATE TABLE IF NOT EXISTS fanout_spill (
    id          bigserial PRIMARY KEY,
    payload     text NOT NULL,
    channels    text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Erasures of data keys, counted: each statement that deletes conversation or file
-- keys moves it on, whichever path it comes from (logout, delete, expiry, an account's
-- cascade, an upload collected). The master key then takes a step (epochs.py) and
-- what was erased opens for no key kept. A sequence, not a row: it takes no lock,
-- so erasures never queue behind each other for it.
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

-- Who may reach whom (contract v1.2, docs/api.md "Who may reach you").
-- A suspended account cannot log in until the operator lifts it (`secure-link users`).
ALTER TABLE users ADD COLUMN IF NOT EXISTS suspended_at timestamptz;

-- Invitations to register. The code a person holds is this random part plus a tag
-- keyed by a secret derived from the pepper (accounts/invites): a dump yields no
-- usable code. NULL `created_by`: made by the operator.
CREATE TABLE IF NOT EXISTS invites (
    nonce       bytea PRIMARY KEY,
    created_by  bigint REFERENCES users (id) ON DELETE CASCADE,
    uses_left   integer NOT NULL CHECK (uses_left >= 0),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS invites_creator_idx ON invites (created_by, created_at);

-- One user blocks another; either direction keeps both apart. Blocks outlive logouts.
CREATE TABLE IF NOT EXISTS blocks (
    blocker_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    since       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);
CREATE INDEX IF NOT EXISTS blocks_blocked_idx ON blocks (blocked_id);

-- Whether two users are kept apart, read with a snapshot of its own: VOLATILE
-- PL/pgSQL (never inlined) takes a fresh snapshot for its query, so the send
-- statement, which passes the count of its send locks to force the call after
-- them, sees a block that committed while it waited for those locks.
CREATE OR REPLACE FUNCTION blocked_after(a bigint, b bigint, locks_held bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN locks_held IS NOT NULL AND EXISTS (
        SELECT 1 FROM blocks WHERE (blocker_id = a AND blocked_id = b) OR (blocker_id = b AND blocked_id = a));
END $$;

-- The usernames of deleted accounts, never registered again: a keyed hash of the
-- folded name only (docs/privacy.md), which can answer nothing but "was it taken?".
CREATE TABLE IF NOT EXISTS retired_usernames (
    tag  bytea PRIMARY KEY
);

-- The versions this file already contains, recorded only when it has just
-- created the database: an older database keeps its record, so the
-- migrations it lacks still run after this file.
INSERT INTO schema_migrations (version)
SELECT version FROM (VALUES (1), (2), (3), (4), (5), (6), (7)) AS shipped (version)
WHERE NOT EXISTS (SELECT 1 FROM schema_migrations);
