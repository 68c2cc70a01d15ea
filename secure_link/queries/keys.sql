-- name: lock_master_keys
-- Workers and hosts starting at once check or register the master key one at a time,
-- so two new keys can never both become a deployment's first.
-- (7005: 7004 is the login throttle's, keyed by address hash, which may be 0.)
SELECT pg_advisory_xact_lock(7005, 0);

-- name: list_master_keys
-- The ids of the master keys some row may be wrapped by (keys.open_keyring, rotation.py).
SELECT id FROM master_keys ORDER BY created_at, id;

-- name: find_newest_master_key
-- The key the deployment wraps with: the last registered (a rotation's .next, or the last step).
SELECT id FROM master_keys ORDER BY created_at DESC, id LIMIT 1;

-- name: register_master_key
-- Before a master key wraps anything: the foreign keys of conversation_keys
-- and files then refuse rows wrapped by a key a rotation has retired. It covers
-- the erasures counted so far (epochs.py): those of later ones await the next step.
INSERT INTO master_keys (id, erasures_seen)
SELECT $1, CASE WHEN is_called THEN last_value ELSE 0 END FROM erasure_count
ON CONFLICT DO NOTHING;

-- name: master_key_step_due
-- epochs.py: the newest key was registered before an erasure and is $1 seconds old,
-- or a step (or rotation) is half done: more than one key is registered.
SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM erasure_count) > k.erasures_seen
       AND k.created_at <= now() - make_interval(secs => $1)
       OR (SELECT count(*) FROM master_keys) > 1
FROM master_keys k ORDER BY k.created_at DESC, k.id LIMIT 1;

-- name: retire_master_key
-- Fails (foreign key) while any row is still wrapped by it: the rotation rewraps and tries again.
DELETE FROM master_keys WHERE id = $1;

-- name: find_conversation_key
-- $1 < $2: the pair's user ids, lowest first. created_at is the key's generation (bodies.py).
SELECT wrapped_key, master_key_id, created_at FROM conversation_keys WHERE low_user_id = $1 AND high_user_id = $2;

-- name: insert_conversation_key
-- Two first sends at once both insert; the loser inserts nothing and reads the
-- winner's with find_conversation_key (a new statement, so it sees the commit).
INSERT INTO conversation_keys (low_user_id, high_user_id, wrapped_key, master_key_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT (low_user_id, high_user_id) DO NOTHING;

-- name: delete_user_conversation_keys
-- Logout's first step, inside its transaction: without its key no stored body
-- of those conversations can be read again, whatever copies remain.
DELETE FROM conversation_keys WHERE low_user_id = $1 OR high_user_id = $1
RETURNING low_user_id, high_user_id;

-- name: list_conversation_keys_to_rewrap
-- A rotation's batch: keys not wrapped by the new master key $1. Rows a
-- logout is deleting are skipped, not waited for; a later batch sees what is left.
-- NO KEY UPDATE (the rewrap changes no key column): it shares a row with the
-- sends in flight, which hold it FOR KEY SHARE (insert_messages), so a busy
-- conversation is not skipped batch after batch.
SELECT low_user_id, high_user_id, wrapped_key FROM conversation_keys
WHERE master_key_id <> $1
LIMIT $2
FOR NO KEY UPDATE SKIP LOCKED;

-- name: rewrap_conversation_keys
-- One statement per batch: $1, $2 the pairs, $3 their keys wrapped by master key $4.
UPDATE conversation_keys c SET wrapped_key = batch.wrapped_key, master_key_id = $4
FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS batch (low_user_id, high_user_id, wrapped_key)
WHERE c.low_user_id = batch.low_user_id AND c.high_user_id = batch.high_user_id;

-- name: list_file_keys_to_rewrap
-- As list_conversation_keys_to_rewrap, for files (those stored before
-- encryption have no key and are left alone).
SELECT id, wrapped_key FROM files
WHERE master_key_id <> $1
LIMIT $2
FOR UPDATE SKIP LOCKED;

-- name: rewrap_file_keys
-- $1 the file ids, $2 their keys wrapped by master key $3.
UPDATE files f SET wrapped_key = batch.wrapped_key, master_key_id = $3
FROM unnest($1::text[], $2::bytea[]) AS batch (id, wrapped_key)
WHERE f.id = batch.id;

-- name: find_conversation_key_born
-- The key's generation (bodies.py): a conversation cleared and begun again has a new key.
SELECT created_at FROM conversation_keys WHERE low_user_id = $1 AND high_user_id = $2;

-- name: try_lock_rotation
-- One `keys rotate` at a time (rotation.py), held by the session for the whole
-- rotation and ended with it; (7005, 0) is lock_master_keys'.
SELECT pg_try_advisory_lock(7005, 1);

-- name: unlock_rotation
SELECT pg_advisory_unlock(7005, 1);

-- name: find_rotation_holder
-- The session holding the rotation lock, for the refusal's message: a rotation
-- whose host died unseen holds it until PostgreSQL drops that session.
SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND classid = 7005 AND objid = 1 AND objsubid = 2 AND granted;
