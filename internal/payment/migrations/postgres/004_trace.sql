-- +goose Up
-- The order's trace, which a provider's webhook about the payment
-- continues.
ALTER TABLE payments ADD COLUMN traceparent TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE payments DROP COLUMN traceparent;
