-- Removing messages for good (erasure.py): expiry sweeps, delete for everyone,
-- and the files to unlink. A file goes with its last message: the same
-- attachment may travel in several messages of one conversation.

-- name: sweep_expired_messages
-- One sweep batch ($1 rows at most), oldest expiry first: delete what has
-- expired, with the attachments no other message carries, and record their
-- paths in doomed_files in the same commit, so a sweeper killed before it
-- unlinks leaves a record the next sweep finishes. SKIP LOCKED: workers and
-- hosts sweeping at once share the work and never wait for each other.
WITH due AS (
    SELECT id FROM messages WHERE expires_at <= now()
    ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM messages m USING due WHERE m.id = due.id
    RETURNING m.id, m.sender_id, m.recipient_id, m.attachment_id
), files_gone AS (
    DELETE FROM files f USING gone
    WHERE f.id = gone.attachment_id
      AND NOT EXISTS (SELECT 1 FROM messages other
                      WHERE other.attachment_id = f.id AND other.id NOT IN (SELECT id FROM gone))
    RETURNING f.path, f.thumbnail_path
), recorded AS (
    INSERT INTO doomed_files (path)
    SELECT kept.path FROM files_gone,
           LATERAL (VALUES (files_gone.path), (files_gone.thumbnail_path)) AS kept (path)
    WHERE kept.path IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING path
)
SELECT gone.id, s.username AS sender, r.username AS recipient, gone.sender_id, gone.recipient_id,
       (SELECT array_agg(path) FROM recorded) AS doomed
FROM gone JOIN users s ON s.id = gone.sender_id JOIN users r ON r.id = gone.recipient_id
ORDER BY gone.id;

-- name: find_message_parties
-- Who a deletion must lock (lock_pair_messages) before deleting: message $1's two
-- parties, when user $2 is one of them.
SELECT sender_id, recipient_id FROM messages WHERE id = $1 AND (sender_id = $2 OR recipient_id = $2);

-- name: lock_pair_messages
-- Both users' send lock (insert_messages takes them in the same ascending order):
-- no send between them is in flight while a deletion decides their conversation ended.
SELECT pg_advisory_xact_lock(7001, LEAST($1::bigint, $2::bigint)::int),
       pg_advisory_xact_lock(7001, GREATEST($1::bigint, $2::bigint)::int);

-- name: forget_unused_conversation_key
-- The last message of a conversation without a timer is gone: the conversation has
-- ended, so its key goes too, and every copy sealed under it (dead tuples, WAL, fan-out)
-- with it. Run after lock_pair_messages, in a statement of its own: its snapshot then
-- holds every committed send, and a send that comes later finds no key and is sealed
-- with a new one (insert_messages). $1 < $2.
DELETE FROM conversation_keys k
WHERE k.low_user_id = $1 AND k.high_user_id = $2
  AND NOT EXISTS (SELECT 1 FROM messages m
                  WHERE LEAST(m.sender_id, m.recipient_id) = $1 AND GREATEST(m.sender_id, m.recipient_id) = $2)
  AND NOT EXISTS (SELECT 1 FROM conversation_timers t WHERE t.low_user_id = $1 AND t.high_user_id = $2)
RETURNING k.low_user_id;

-- name: delete_message_for_everyone
-- Message $1, by user $2, who must be one of its two parties; an expired one
-- is as gone as a deleted one. Its file goes unless another message carries it.
WITH gone AS (
    DELETE FROM messages m
    WHERE m.id = $1 AND (m.sender_id = $2 OR m.recipient_id = $2)
      AND (m.expires_at IS NULL OR m.expires_at > now())
    RETURNING m.id, m.sender_id, m.recipient_id, m.attachment_id
), files_gone AS (
    DELETE FROM files f USING gone
    WHERE f.id = gone.attachment_id
      AND NOT EXISTS (SELECT 1 FROM messages other WHERE other.attachment_id = f.id AND other.id <> gone.id)
    RETURNING f.path, f.thumbnail_path
), recorded AS (
    INSERT INTO doomed_files (path)
    SELECT kept.path FROM files_gone,
           LATERAL (VALUES (files_gone.path), (files_gone.thumbnail_path)) AS kept (path)
    WHERE kept.path IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING path
)
SELECT gone.id, s.username AS sender, r.username AS recipient, gone.sender_id, gone.recipient_id,
       (SELECT array_agg(path) FROM recorded) AS doomed, (SELECT count(*) FROM files_gone) AS files
FROM gone JOIN users s ON s.id = gone.sender_id JOIN users r ON r.id = gone.recipient_id;

-- name: record_doomed_files
-- Logout's clearing records the paths of the files it deletes, in its transaction.
INSERT INTO doomed_files (path) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING;

-- name: forget_doomed_files
-- The files are gone from disk: their record goes too.
DELETE FROM doomed_files WHERE path = ANY($1::text[]);

-- name: postpone_doomed_files
-- Files that could not be unlinked: the sweeper tries them again after
-- STALE_DOOMED_S, not every round. doomed_at is then the last try, not the
-- deletion (the audit still finds such a file by its age on disk).
UPDATE doomed_files SET doomed_at = now() WHERE path = ANY($1::text[]);

-- name: list_stale_doomed_files
-- Records older than $1 seconds: their process died before unlinking (or is
-- still at it: unlinking twice is harmless). At most $2.
SELECT path FROM doomed_files WHERE doomed_at < now() - make_interval(secs => $1) LIMIT $2;
