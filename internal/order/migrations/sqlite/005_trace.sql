-- +goose Up
-- The trace an order was placed in: what it causes later (a customer's
-- cancel, its deadline) continues it, so one order is one trace.
ALTER TABLE orders ADD COLUMN traceparent TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE orders DROP COLUMN traceparent;
