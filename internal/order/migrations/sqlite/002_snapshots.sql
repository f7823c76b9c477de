-- +goose Up
-- The order as it was at each version, for live status streams that
-- resume from any version.
ALTER TABLE order_timeline ADD COLUMN snapshot TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE order_timeline DROP COLUMN snapshot;
