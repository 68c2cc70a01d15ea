-- name: insert_messages
-- Group commit: one statement stores a whole batch of drafts (writer.py), one
-- array per field, $1 the drafts' positions. The writer has already resolved
-- each recipient ($3, never the sender) and sealed each body ($4) with its
-- conversation's key, born at $7 (conversation_keys.created_at). For each
-- draft: check that key is still the conversation's (a logout may have
-- destroyed it meanwhile: the writer then seals again), check the attachment
-- ($6), stamp the expiry from the conversation's timer, insert, mark the
-- attachment used; return the stored drafts by position.
-- Order matters. `locked` takes the advisory lock of every user of the batch,
-- in ascending order (so batches on several workers cannot deadlock), and is
-- evaluated once, before any row of `numbered`: every id is drawn after all
-- locks are held, so each user's messages commit in id order (`sync` never
-- skips one) and a logout, which takes the same lock first, cannot interleave.
-- But the statement's snapshot is older than its locks: a logout that committed
-- while it waited is invisible to its reads. `FOR KEY SHARE OF k` reads each
-- key row as it is now, after the locks: a key that logout deleted meanwhile
-- drops its drafts (resealed by the writer), where the snapshot alone would
-- store them sealed with a destroyed key, unreadable for good. Blocks are read
-- the same way, as they are after the locks (blocked_after, schema.sql): a draft
-- between two users one of whom blocks the other is left out, its batch stored.
-- Ids are drawn in position order. An attachment must be the sender's own and
-- not yet used with anyone else; it is marked used only if its message is
-- really inserted, so a retried client_id cannot claim a new file. The writer
-- never puts two drafts with the same file in one batch; two with the same
-- sender and client_id may be, and ON CONFLICT keeps the first. A client_id is
-- claimed in used_client_ids ($8: its keyed tag) first, checked against the index
-- as it is now, not the snapshot: one used before is never stored again, even once
-- its message is deleted or expired. No row back for a draft means: a retried
-- client_id, a refused attachment, or a key destroyed since it was sealed (the
-- writer asks which).
WITH draft AS (
    SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::bytea[], $5::text[], $6::text[],
                         $7::timestamptz[], $8::bytea[])
        AS d (ord, sender_id, recipient_id, sealed_body, client_id, attachment_id, key_born, client_tag)
), locked AS (
    SELECT count(*) AS users FROM (
        SELECT pg_advisory_xact_lock(7001, user_id::int) FROM (
            SELECT DISTINCT user_id
            FROM draft, LATERAL (VALUES (sender_id), (recipient_id)) AS party (user_id)
            ORDER BY user_id OFFSET 0
        ) ascending
    ) taken
), keyed AS (
    SELECT draft.*, COALESCE(timer.seconds, 0) AS timer_seconds
    FROM draft
    JOIN conversation_keys k
      ON k.low_user_id = LEAST(draft.sender_id, draft.recipient_id)
     AND k.high_user_id = GREATEST(draft.sender_id, draft.recipient_id)
     AND k.created_at = draft.key_born
    LEFT JOIN conversation_timers timer
      ON timer.low_user_id = k.low_user_id AND timer.high_user_id = k.high_user_id
    WHERE (SELECT users FROM locked) >= 0 AND draft.sender_id <> draft.recipient_id
      AND NOT blocked_after(draft.sender_id, draft.recipient_id, (SELECT users FROM locked))
    FOR KEY SHARE OF k
), claimable AS (
    SELECT keyed.ord, files.id, files.name, files.content_type, files.size, files.width,
           files.height, files.thumbnail_path
    FROM keyed JOIN files ON files.id = keyed.attachment_id
    WHERE files.owner_id = keyed.sender_id AND files.purpose = 'attachment'
      AND (files.used_with IS NULL OR files.used_with = keyed.recipient_id)
    FOR UPDATE OF files
), numbered AS (
    SELECT nextval(pg_get_serial_sequence('messages', 'id')) AS id, clock_timestamp() AS sent_at, ready.*
    FROM (
        SELECT keyed.*, claimable.id AS file_id
        FROM keyed LEFT JOIN claimable ON claimable.ord = keyed.ord
        WHERE (SELECT users FROM locked) >= 0
          AND (keyed.attachment_id IS NULL OR claimable.id IS NOT NULL)
        ORDER BY keyed.ord OFFSET 0
    ) ready
), claimed AS (
    INSERT INTO used_client_ids (tag)
    SELECT client_tag FROM numbered WHERE client_tag IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING tag
), inserted AS (
    INSERT INTO messages (id, sender_id, recipient_id, sealed_body, client_id, attachment_id, sent_at, expires_at)
    SELECT id, sender_id, recipient_id, sealed_body, client_id, file_id, sent_at,
           CASE WHEN timer_seconds > 0 THEN sent_at + make_interval(secs => timer_seconds) END
    FROM numbered
    WHERE client_tag IS NULL OR client_tag IN (SELECT tag FROM claimed)
    ON CONFLICT (sender_id, client_id) DO NOTHING
    RETURNING id, recipient_id, attachment_id, sent_at, expires_at
), marked AS (
    UPDATE files SET used_with = inserted.recipient_id
    FROM inserted WHERE files.id = inserted.attachment_id
)
SELECT n.ord, i.id, i.recipient_id, i.sent_at, i.expires_at,
       c.id AS file_id, c.name AS file_name, c.content_type AS file_content_type,
       c.size AS file_size, c.width AS file_width, c.height AS file_height,
       c.thumbnail_path AS file_thumbnail_path
FROM inserted i
JOIN numbered n ON n.id = i.id
LEFT JOIN claimable c ON c.ord = n.ord;

-- name: find_user_ids_by_usernames
-- The writer resolves the recipients of a batch it has not met yet (usernames never change).
SELECT id, username FROM users WHERE username = ANY($1::text[]);

-- name: find_message_by_client_id
-- The original of a retried send.
SELECT * FROM message_view WHERE sender_id = $1 AND client_id = $2;

-- name: client_id_was_used
-- A retried send whose original is gone (deleted, expired): its tag is still remembered.
SELECT EXISTS (SELECT 1 FROM used_client_ids WHERE tag = $1);

-- name: prune_used_client_ids
-- Housekeeping: forget the client_ids used more than $1 days ago.
DELETE FROM used_client_ids WHERE used_on < current_date - $1::int;

-- name: list_messages_since
-- `sync`: the user's messages, sent or received, after an id, oldest first.
SELECT * FROM message_view
WHERE (sender_id = $1 OR recipient_id = $1) AND id > $2
ORDER BY id LIMIT $3;

-- name: max_message_id_for_user
-- Two backward index probes: max(id) with an OR scans the primary key instead,
-- slowest for the users with fewest messages (12 ms at 150k rows, measured).
SELECT GREATEST(
    (SELECT max(id) FROM messages WHERE sender_id = $1),
    (SELECT max(id) FROM messages WHERE recipient_id = $1),
    0);

-- name: list_conversation_before
-- A history page going back: newest first here, reversed by the caller.
-- NULL $3 means "from the newest".
SELECT * FROM message_view
WHERE LEAST(sender_id, recipient_id) = LEAST($1::bigint, $2::bigint)
  AND GREATEST(sender_id, recipient_id) = GREATEST($1::bigint, $2::bigint)
  AND ($3::bigint IS NULL OR id < $3)
ORDER BY LEAST(sender_id, recipient_id), GREATEST(sender_id, recipient_id), id DESC
LIMIT $4;

-- name: list_conversation_after
SELECT * FROM message_view
WHERE LEAST(sender_id, recipient_id) = LEAST($1::bigint, $2::bigint)
  AND GREATEST(sender_id, recipient_id) = GREATEST($1::bigint, $2::bigint)
  AND id > $3
ORDER BY LEAST(sender_id, recipient_id), GREATEST(sender_id, recipient_id), id
LIMIT $4;

-- name: list_conversations
-- One row per peer: the last message, the peer, and how many of the peer's
-- messages came after this user's read receipt. Newest conversation first.
WITH last AS (
    SELECT CASE WHEN sender_id = $1 THEN recipient_id ELSE sender_id END AS peer_id,
           max(id) AS last_id
    FROM messages WHERE (sender_id = $1 OR recipient_id = $1) AND (expires_at IS NULL OR expires_at > now())
    GROUP BY 1
)
SELECT v.*, p.id AS peer_id, p.username AS peer_username, p.display_name AS peer_display_name,
       p.avatar_file_id AS peer_avatar_file_id, p.created_at AS peer_created_at,
       (SELECT count(*) FROM messages u
        WHERE u.sender_id = last.peer_id AND u.recipient_id = $1
          AND u.id > COALESCE(r.last_read_id, 0)
          AND (u.expires_at IS NULL OR u.expires_at > now())) AS unread,
       COALESCE(t.seconds, 0) AS timer
FROM last
JOIN message_view v ON v.id = last.last_id
JOIN users p ON p.id = last.peer_id
LEFT JOIN conversation_reads r ON r.user_id = $1 AND r.peer_id = last.peer_id
LEFT JOIN conversation_timers t
  ON t.low_user_id = LEAST($1::bigint, last.peer_id) AND t.high_user_id = GREATEST($1::bigint, last.peer_id)
ORDER BY last.last_id DESC;

-- name: conversation_exists
-- Typing and read receipts go only to someone the user already talks with.
SELECT EXISTS (
    SELECT 1 FROM messages
    WHERE LEAST(sender_id, recipient_id) = LEAST($1::bigint, $2::bigint)
      AND GREATEST(sender_id, recipient_id) = GREATEST($1::bigint, $2::bigint));

-- name: list_peer_ids
-- Everyone who shares a conversation with the user, blocks apart: presence and
-- profile changes go to them only.
SELECT DISTINCT CASE WHEN m.sender_id = $1 THEN m.recipient_id ELSE m.sender_id END AS peer_id
FROM messages m
WHERE (m.sender_id = $1 OR m.recipient_id = $1)
  AND NOT EXISTS (SELECT 1 FROM blocks b
                  WHERE (b.blocker_id = m.sender_id AND b.blocked_id = m.recipient_id)
                     OR (b.blocker_id = m.recipient_id AND b.blocked_id = m.sender_id));

-- name: upsert_read_receipt
-- Receipts only move forward, and never past the peer's last message to this
-- user: a receipt "up to 10^15" must not hide every future message as read.
INSERT INTO conversation_reads (user_id, peer_id, last_read_id)
VALUES ($1, $2, LEAST($3::bigint, (SELECT COALESCE(max(id), 0) FROM messages
                                   WHERE sender_id = $2 AND recipient_id = $1)))
ON CONFLICT (user_id, peer_id)
DO UPDATE SET last_read_id = GREATEST(conversation_reads.last_read_id, EXCLUDED.last_read_id)
RETURNING last_read_id;

-- name: lock_user_messages
-- insert_message takes this lock for both users, so no send involving the user
-- commits between here and the end of logout's clearing: none survives it.
SELECT pg_advisory_xact_lock(7001, $1::int);

-- name: delete_user_messages
-- Logout: every message of every conversation the user is in, for both
-- parties, with the attachments to delete, grouped by peer for `cleared`.
WITH gone AS (
    DELETE FROM messages WHERE sender_id = $1 OR recipient_id = $1
    RETURNING sender_id, recipient_id, attachment_id
)
SELECT p.id AS peer_id, p.username AS peer_username, g.messages, g.attachment_ids
FROM (
    SELECT CASE WHEN sender_id = $1 THEN recipient_id ELSE sender_id END AS peer_id,
           count(*) AS messages,
           array_remove(array_agg(attachment_id), NULL) AS attachment_ids
    FROM gone GROUP BY 1
) g JOIN users p ON p.id = g.peer_id;

-- name: delete_user_reads
DELETE FROM conversation_reads WHERE user_id = $1 OR peer_id = $1;

-- name: delete_user_timers
-- Logout's clearing resets the cleared conversations' timers to off (contract v1.1).
DELETE FROM conversation_timers WHERE low_user_id = $1 OR high_user_id = $1;
