-- Parked fan-out payloads keep the channels they went to, so that logout's
-- clearing can delete the parked copies of what it erases (docs/security.md).
ALTER TABLE fanout_spill ADD COLUMN IF NOT EXISTS channels text[] NOT NULL DEFAULT '{}';
