-- +goose Up
-- A payment token leaves orders only sealed to the payments service, in
-- order.placed; orders keeps none. The column stays (empty) so a rollback
-- of the binary still reads the table.
UPDATE orders SET payment_token = '';

-- +goose Down
SELECT 1;
