-- +goose Up
-- One message per customer-facing event.
CREATE TABLE messages (
    event_id    TEXT PRIMARY KEY,
    order_id    TEXT    NOT NULL,
    customer_id TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    at_us       BIGINT NOT NULL
);
CREATE INDEX messages_order ON messages (order_id);
-- Who placed each order, for events that do not say.
CREATE TABLE order_customers (
    order_id    TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL
);

-- +goose Down
DROP TABLE order_customers;
DROP TABLE messages;
