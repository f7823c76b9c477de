-- +goose Up
-- One row per order seen: its shipment, or 'cancelled' if the order was
-- cancelled before it could ship.
CREATE TABLE shipments (
    order_id    TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    shipment_id TEXT NOT NULL DEFAULT '',
    carrier     TEXT NOT NULL DEFAULT '',
    tracking    TEXT NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE shipments;
