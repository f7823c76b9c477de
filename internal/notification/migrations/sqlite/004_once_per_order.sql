-- +goose Up
-- A customer hears of each step of an order once, and a merchant endpoint
-- gets one delivery per order and event type: a copy of an event under a
-- fresh id (a replay, a forgery) changes nothing. Earlier copies go.
DELETE FROM messages WHERE event_id NOT IN (SELECT MIN(event_id) FROM messages GROUP BY order_id, type);
CREATE UNIQUE INDEX messages_once_per_order ON messages (order_id, type);
-- meaning is "<type> <order id>" for the event types that happen once per
-- order, NULL for the others (product.updated, endpoint.disabled).
ALTER TABLE webhook_deliveries ADD COLUMN meaning TEXT;
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (endpoint_id, meaning);

-- +goose Down
DROP INDEX webhook_deliveries_once;
ALTER TABLE webhook_deliveries DROP COLUMN meaning;
DROP INDEX messages_once_per_order;
