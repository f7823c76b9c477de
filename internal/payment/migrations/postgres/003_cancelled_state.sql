-- +goose Up
-- A payment cancelled before anything was authorized ends in state
-- cancelled, not pending: every payment of a finished order is final.
UPDATE payments SET state = 'cancelled' WHERE state = 'pending' AND cancelled = 1;

-- +goose Down
UPDATE payments SET state = 'pending' WHERE state = 'cancelled';
