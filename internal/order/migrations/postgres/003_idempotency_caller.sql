-- +goose Up
-- Idempotency keys belong to the caller that sent them (the authenticated
-- subject): the same key from two callers is two independent requests.
-- Keys stored before this migration belong to nobody and never match.
ALTER TABLE idempotency_keys ADD COLUMN caller TEXT NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (caller, key);

-- +goose Down
DELETE FROM idempotency_keys WHERE caller <> '';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys DROP COLUMN caller;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (key);
