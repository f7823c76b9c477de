-- +goose Up
-- One row per order: what to charge (from order.placed) and where the
-- payment stands. cancelled is set once order.cancelled is seen.
CREATE TABLE payments (
    order_id     TEXT PRIMARY KEY,
    amount_cents INTEGER NOT NULL,
    currency     TEXT    NOT NULL,
    token        TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    cancelled    INTEGER NOT NULL DEFAULT 0,
    provider_ref TEXT    NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE payments;
