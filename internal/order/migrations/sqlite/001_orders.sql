-- +goose Up
-- Read model of the catalog, kept current from product.updated.
CREATE TABLE catalog (
    sku         TEXT PRIMARY KEY,
    name        TEXT    NOT NULL,
    price_cents INTEGER NOT NULL,
    currency    TEXT    NOT NULL
);
CREATE TABLE orders (
    id               TEXT PRIMARY KEY,
    customer_id      TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    items            TEXT    NOT NULL,
    total_cents      INTEGER NOT NULL,
    currency         TEXT    NOT NULL,
    payment_token    TEXT    NOT NULL,
    shipping_address TEXT    NOT NULL,
    cancel_reason    TEXT    NOT NULL DEFAULT '',
    version          INTEGER NOT NULL,
    shipped          INTEGER NOT NULL DEFAULT 0,
    captured         INTEGER NOT NULL DEFAULT 0,
    deadline_us      INTEGER NOT NULL,
    created_us       INTEGER NOT NULL
);
CREATE INDEX orders_pending_deadline ON orders (deadline_us) WHERE status = 'pending';
CREATE INDEX orders_customer ON orders (customer_id, created_us);
CREATE TABLE order_timeline (
    order_id TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    type     TEXT    NOT NULL,
    at_us    INTEGER NOT NULL,
    PRIMARY KEY (order_id, version)
);
-- Idempotency-Key of POST /api/orders: claimed while the request runs,
-- then stored with its response in the order's transaction.
CREATE TABLE idempotency_keys (
    key          TEXT PRIMARY KEY,
    request_hash TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    status       INTEGER NOT NULL DEFAULT 0,
    response     TEXT    NOT NULL DEFAULT '',
    claimed_us   INTEGER NOT NULL
);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE order_timeline;
DROP TABLE orders;
DROP TABLE catalog;
