-- name: insert_file
-- Runs only after the bytes are in place (os.replace), so a crash leaves at
-- worst an unreferenced file for the disk sweep, never a row without its file.
-- $12 is the file's data key wrapped by master key $13 (keys.insert_wrapped).
INSERT INTO files (id, owner_id, purpose, path, thumbnail_path, name, content_type, size, width, height, sha256,
                   wrapped_key, master_key_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
RETURNING *;

-- name: lock_user_uploads
-- Uploads of one user record one at a time, so each sees the others in the quota.
SELECT pg_advisory_xact_lock(7003, $1::int);

-- name: pending_upload_bytes
-- The user's stored but unsent attachments, which UPLOAD_QUOTA_BYTES bounds
-- (a sent one is the conversation's, and goes with it).
SELECT COALESCE(sum(size), 0)::bigint FROM files
WHERE owner_id = $1 AND purpose = 'attachment' AND used_with IS NULL;

-- name: replace_avatar
-- Returns the previous avatar's id, to delete with its files in the same
-- transaction; the row lock makes concurrent avatar uploads replace in turn.
-- NO KEY UPDATE, not UPDATE: insert_file's foreign key already holds KEY
-- SHARE on this row, and UPDATE would deadlock two concurrent uploads.
UPDATE users u SET avatar_file_id = $2
FROM (SELECT id, avatar_file_id FROM users WHERE id = $1 FOR NO KEY UPDATE) old
WHERE u.id = old.id
RETURNING old.avatar_file_id;

-- name: find_visible_file
-- One query decides who may see a file, so every refusal is the same 404:
-- avatars to any logged-in user ($2); an attachment not sent yet to its
-- uploader; a sent one to both parties of a live message that carries it
-- (an expired message's file is not served, swept or not).
SELECT f.* FROM files f
WHERE f.id = $1 AND (
    f.purpose = 'avatar' OR (f.owner_id = $2 AND f.used_with IS NULL)
    OR EXISTS (SELECT 1 FROM messages m
               WHERE m.attachment_id = f.id AND (m.sender_id = $2 OR m.recipient_id = $2)
                 AND (m.expires_at IS NULL OR m.expires_at > now())));

-- name: delete_files_by_ids
-- Returns the paths so the caller unlinks them after its transaction commits.
DELETE FROM files WHERE id = ANY($1::text[]) RETURNING id, path, thumbnail_path;

-- name: delete_stale_uploads
-- Abandoned uploads older than $1 seconds: attachments never sent, avatars no
-- one wears. `used_with IS NULL` is rechecked on a row that insert_message is
-- claiming at this moment, so a file being attached is never collected.
DELETE FROM files f
WHERE f.created_at < now() - make_interval(secs => $1)
  AND ((f.purpose = 'attachment' AND f.used_with IS NULL
        AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.attachment_id = f.id))
    OR (f.purpose = 'avatar'
        AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_file_id = f.id)))
RETURNING id, path, thumbnail_path;

-- name: list_file_paths
-- The disk sweep keeps every file that a row still names.
SELECT path, thumbnail_path FROM files WHERE id = ANY($1::text[]);
