-- +goose Up
CREATE TABLE products (
    sku         TEXT PRIMARY KEY,
    name        TEXT    NOT NULL,
    price_cents BIGINT NOT NULL,
    currency    TEXT    NOT NULL,
    received    BIGINT NOT NULL,
    available   BIGINT NOT NULL CHECK (available >= 0),
    reserved    BIGINT NOT NULL CHECK (reserved >= 0),
    committed   BIGINT NOT NULL CHECK (committed >= 0)
);
-- One row per order seen: where its stock stands.
CREATE TABLE stock_orders (
    order_id TEXT PRIMARY KEY,
    state    TEXT NOT NULL
);
CREATE TABLE reservations (
    order_id TEXT    NOT NULL,
    sku      TEXT    NOT NULL REFERENCES products (sku),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
);

-- +goose Down
DROP TABLE reservations;
DROP TABLE stock_orders;
DROP TABLE products;
