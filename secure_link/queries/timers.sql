-- Conversation timers (contract v1.1); the pair is stored lowest user id first.

-- name: find_conversation_timer
-- $1, $2: the two users, either order. No row: never set (off).
SELECT t.seconds, setter.username AS set_by, t.set_at
FROM conversation_timers t LEFT JOIN users setter ON setter.id = t.set_by
WHERE t.low_user_id = LEAST($1::bigint, $2::bigint) AND t.high_user_id = GREATEST($1::bigint, $2::bigint);

-- name: upsert_conversation_timer
-- $1 sets the timer of the conversation with $2 to $3 seconds; it applies to
-- messages sent after this commits (insert_messages reads it at send).
INSERT INTO conversation_timers (low_user_id, high_user_id, seconds, set_by, set_at)
VALUES (LEAST($1::bigint, $2::bigint), GREATEST($1::bigint, $2::bigint), $3, $1, now())
ON CONFLICT (low_user_id, high_user_id)
DO UPDATE SET seconds = EXCLUDED.seconds, set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at
RETURNING seconds, set_at;
