-- +goose Up
-- Events a consumer has processed, recorded in the handler's transaction.
CREATE TABLE inbox (
    consumer       TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    received_at_us INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
CREATE INDEX inbox_received ON inbox (received_at_us);

-- +goose Down
DROP TABLE inbox;
