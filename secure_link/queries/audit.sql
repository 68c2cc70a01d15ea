-- `secure-link audit` (audit.py): what a deployment should not be holding.

-- name: audit_expired_messages
-- Messages past their expiry by more than $1 seconds (the sweeper's promise is 5).
SELECT id, expires_at FROM messages
WHERE expires_at < now() - make_interval(secs => $1)
ORDER BY expires_at;

-- name: audit_file_rows
-- Every file row's paths, to check each against the disk.
SELECT id, path, thumbnail_path FROM files ORDER BY id;

-- name: audit_doomed_files
-- Files whose rows are gone, older than $1 seconds: still on disk if the unlinking never happened.
SELECT path FROM doomed_files WHERE doomed_at < now() - make_interval(secs => $1);

-- name: audit_orphan_conversation_keys
-- Keys of conversations that no longer exist: no message and no timer between the pair
-- (a clearing destroys both; an expired conversation keeps its timer, so its key).
SELECT k.low_user_id, k.high_user_id FROM conversation_keys k
WHERE NOT EXISTS (SELECT 1 FROM messages m
                  WHERE LEAST(m.sender_id, m.recipient_id) = k.low_user_id
                    AND GREATEST(m.sender_id, m.recipient_id) = k.high_user_id)
  AND NOT EXISTS (SELECT 1 FROM conversation_timers t
                  WHERE t.low_user_id = k.low_user_id AND t.high_user_id = k.high_user_id)
ORDER BY 1, 2;
