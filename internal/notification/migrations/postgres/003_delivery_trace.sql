-- +goose Up
-- The traceparent of the event's handling, so each delivery attempt's span
-- joins the order's trace.
ALTER TABLE webhook_deliveries ADD COLUMN traceparent TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE webhook_deliveries DROP COLUMN traceparent;
