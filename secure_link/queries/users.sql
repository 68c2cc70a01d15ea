-- name: insert_user
-- A taken username inserts nothing and returns no row: the caller answers 409
-- without a racy lookup first.
INSERT INTO users (username, display_name, phrase_hash)
VALUES ($1, $2, $3)
ON CONFLICT (username) DO NOTHING
RETURNING id, username, display_name, avatar_file_id, created_at;

-- name: find_user_credentials
-- Login reads the hash and the public fields in one round trip.
SELECT id, username, display_name, avatar_file_id, created_at, phrase_hash
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
