-- name: insert_session
INSERT INTO sessions (user_id, token_hash, expires_at, user_agent, address)
VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5)
RETURNING id;

-- name: authenticate_session
-- One round trip per authenticated request: find a live session and its user,
-- sliding the expiry forward at most once a minute to spare writes.
WITH live AS (
    SELECT id, user_id, last_used_at FROM sessions
    WHERE token_hash = $1 AND expires_at > now()
), touched AS (
    UPDATE sessions SET last_used_at = now(), expires_at = now() + make_interval(secs => $2)
    WHERE id IN (SELECT id FROM live WHERE last_used_at < now() - interval '60 seconds')
)
SELECT live.id AS session_id, u.id, u.username, u.display_name, u.avatar_file_id, u.created_at
FROM live JOIN users u ON u.id = live.user_id
WHERE u.suspended_at IS NULL;

-- name: list_sessions
SELECT id, created_at, last_used_at, expires_at, user_agent, address
FROM sessions WHERE user_id = $1 AND expires_at > now()
ORDER BY last_used_at DESC;

-- name: delete_session
-- Scoped to the owner: revoking someone else's session id deletes nothing.
DELETE FROM sessions WHERE id = $1 AND user_id = $2 RETURNING id;

-- name: delete_expired_sessions
-- Their sockets close by themselves: list_live_session_ids no longer names them.
DELETE FROM sessions WHERE expires_at <= now();

-- name: session_is_live
-- A socket re-checks its session after a fan-out gap, in case the revocation
-- event was lost with the connection.
SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND expires_at > now());

-- name: list_live_session_ids
-- Which of a worker's socket sessions are still live; housekeeping closes the
-- sockets of the others, even when the revocation's event never arrived.
SELECT id FROM sessions WHERE id = ANY($1::bigint[]) AND expires_at > now();

-- name: delete_other_sessions
-- A phrase changed: every other session of the user ends ($2 stays); their ids, to close their sockets.
DELETE FROM sessions WHERE user_id = $1 AND id <> $2 RETURNING id;

-- name: delete_user_sessions
-- An account suspended or deleted: every session ends; their ids, to close their sockets.
DELETE FROM sessions WHERE user_id = $1 RETURNING id;
