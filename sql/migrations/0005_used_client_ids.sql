-- A client_id keeps answering after its message is deleted or expired (docs/api.md,
-- "Retries"): the keyed hashes of the client_ids used in the last 30 days. Messages
-- stored before this version are still caught by messages_client_id_unique while they live.
CREATE TABLE IF NOT EXISTS used_client_ids (
    tag      bytea PRIMARY KEY,
    used_on  date NOT NULL DEFAULT current_date
);
CREATE INDEX IF NOT EXISTS used_client_ids_day_idx ON used_client_ids (used_on);
