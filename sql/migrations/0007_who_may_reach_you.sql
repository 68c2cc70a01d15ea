-- Who may reach whom (contract v1.2, docs/api.md "Who may reach you"): schema.sql holds the same.
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
