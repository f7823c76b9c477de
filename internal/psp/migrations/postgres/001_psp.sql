-- +goose Up
-- The provider's ledger: every operation with its outcome. An idempotency
-- key identifies one operation of one kind.
CREATE TABLE psp_operations (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    op           TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL,
    order_id     TEXT    NOT NULL,
    amount_cents BIGINT NOT NULL,
    currency     TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    reason       TEXT    NOT NULL DEFAULT '',
    at_us        BIGINT NOT NULL,
    UNIQUE (op, idem_key)
);
CREATE INDEX psp_operations_order ON psp_operations (order_id);

-- +goose Down
DROP TABLE psp_operations;
