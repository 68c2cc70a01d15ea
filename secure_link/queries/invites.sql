-- Invitations to register (contract v1.2; secure_link/invites.py). A code is its
-- row's `nonce` plus a keyed tag; live: not revoked, not expired, uses left.

-- name: lock_user_invites
-- Creating an invite counts the user's live ones first: one creation at a time
-- per user, so two at once cannot both pass the limit.
SELECT pg_advisory_xact_lock(7006, $1::int);

-- name: count_live_invites
SELECT count(*) FROM invites
WHERE created_by = $1 AND revoked_at IS NULL AND expires_at > now() AND uses_left > 0;

-- name: insert_invite
-- $2 NULL: the operator's. Expires $4 seconds from now.
INSERT INTO invites (nonce, created_by, uses_left, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
RETURNING nonce, uses_left, expires_at, created_at;

-- name: list_live_invites
-- A user's own live invites, newest first.
SELECT nonce, uses_left, expires_at, created_at FROM invites
WHERE created_by = $1 AND revoked_at IS NULL AND expires_at > now() AND uses_left > 0
ORDER BY created_at DESC, nonce;

-- name: list_operator_invites
-- Every live invite, the operator's and the users' (with who made them), newest first.
SELECT i.nonce, i.uses_left, i.expires_at, i.created_at, u.username AS created_by
FROM invites i LEFT JOIN users u ON u.id = i.created_by
WHERE i.revoked_at IS NULL AND i.expires_at > now() AND i.uses_left > 0
ORDER BY i.created_at DESC, i.nonce;

-- name: revoke_own_invite
-- Only the user's own live invite: anything else revokes nothing (404).
UPDATE invites SET revoked_at = now()
WHERE nonce = $1 AND created_by = $2 AND revoked_at IS NULL AND expires_at > now() AND uses_left > 0
RETURNING nonce, uses_left, expires_at, created_at;

-- name: revoke_any_invite
-- The operator revokes any live invite.
UPDATE invites SET revoked_at = now()
WHERE nonce = $1 AND revoked_at IS NULL AND expires_at > now() AND uses_left > 0
RETURNING nonce, uses_left, expires_at, created_at;

-- name: invite_is_live
-- Checked before a registration hashes its phrase: a dead code costs no bcrypt.
SELECT EXISTS (SELECT 1 FROM invites
               WHERE nonce = $1 AND revoked_at IS NULL AND expires_at > now() AND uses_left > 0);

-- name: use_invite
-- In the registration's transaction, before its user is inserted: one use, taken
-- atomically (the row lock queues concurrent registrations; the WHERE is checked
-- again on the row as it is once the lock is had), given back if the insert fails.
UPDATE invites SET uses_left = uses_left - 1
WHERE nonce = $1 AND revoked_at IS NULL AND expires_at > now() AND uses_left > 0
RETURNING nonce;
