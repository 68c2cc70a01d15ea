-- name: ping_database
-- Readiness: the pool can reach the database and get an answer.
SELECT 1;
