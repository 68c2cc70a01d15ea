-- name: insert_user
-- A taken username inserts nothing and returns no row: the caller answers 409
-- without a racy lookup first.
INSERT INTO users (username, display_name, phrase_hash)
VALUES ($1, $2, $3)
ON CONFLICT (username) DO NOTHING
RETURNING id, username, display_name, avatar_file_id, created_at;

-- name: find_user_credentials
-- Login reads the hash and the public fields in one round trip.
SELECT id, username, display_name, avatar_file_id, created_at, phrase_hash, suspended_at
FROM users WHERE username = $1;

-- name: find_user_by_username
SELECT id, username, display_name, avatar_file_id, created_at
FROM users WHERE username = $1;

-- name: find_user_by_id
SELECT id, username, display_name, avatar_file_id, created_at
FROM users WHERE id = $1;

-- name: update_display_name
UPDATE users SET display_name = $2 WHERE id = $1
RETURNING id, username, display_name, avatar_file_id, created_at;

-- name: lock_username
-- A registration and an account deletion of the same name, one at a time: the
-- registration's next statement then sees the name retired.
SELECT pg_advisory_xact_lock(7007, hashtext($1));

-- name: username_is_retired
SELECT EXISTS (SELECT 1 FROM retired_usernames WHERE tag = $1);

-- name: retire_username
INSERT INTO retired_usernames (tag) VALUES ($1) ON CONFLICT DO NOTHING;

-- name: update_phrase_hash
UPDATE users SET phrase_hash = $2 WHERE id = $1
RETURNING id, username, display_name, avatar_file_id, created_at;

-- name: list_owned_file_paths
-- What an account deletion unlinks of the user's own files: its avatar and unsent uploads
-- (their rows go with the user; attachments it sent went with its conversations).
SELECT path, thumbnail_path FROM files WHERE owner_id = $1;

-- name: delete_user
-- Cascades: sessions, invites, blocks either way, files it owns, live connections,
-- read receipts, timers, conversation keys (logout's clearing has run before).
DELETE FROM users WHERE id = $1 RETURNING id;

-- name: set_suspended
-- $2 true: suspended now (kept if already); false: lifted.
UPDATE users SET suspended_at = CASE WHEN $2 THEN COALESCE(suspended_at, now()) END WHERE id = $1
RETURNING id, username, suspended_at;

-- name: list_users_for_operator
-- `secure-link users list`: name, when made, last seen (a session's last use or a
-- socket open now), live sessions, bytes of files it owns, and whether suspended.
SELECT u.username, u.created_at, u.suspended_at,
       GREATEST((SELECT max(s.last_used_at) FROM sessions s WHERE s.user_id = u.id),
                (SELECT max(c.opened_at) FROM live_connections c WHERE c.user_id = u.id)) AS last_seen,
       (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.expires_at > now()) AS live_sessions,
       (SELECT COALESCE(sum(f.size), 0) FROM files f WHERE f.owner_id = u.id) AS bytes_stored
FROM users u ORDER BY u.username;
