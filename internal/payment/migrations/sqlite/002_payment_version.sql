-- +goose Up
-- A payment's version moves on every write. Several payments instances
-- may handle events of one order at once; a write whose version no longer
-- matches lost that race and is retried against the winner's state.
ALTER TABLE payments ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE payments DROP COLUMN version;
