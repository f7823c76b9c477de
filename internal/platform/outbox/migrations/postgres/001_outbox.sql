-- +goose Up
-- One row per event committed with a state change; relays publish rows
-- (claimed with FOR UPDATE SKIP LOCKED) and stamp sent_at_us. Times are
-- unix microseconds.
CREATE TABLE outbox (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       TEXT   NOT NULL,
    type           TEXT   NOT NULL,
    source         TEXT   NOT NULL,
    subject        TEXT   NOT NULL,
    time_us        BIGINT NOT NULL,
    traceparent    TEXT   NOT NULL DEFAULT '',
    correlation_id TEXT   NOT NULL DEFAULT '',
    causation_id   TEXT   NOT NULL DEFAULT '',
    data           BYTEA  NOT NULL,
    sent_at_us     BIGINT
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at_us IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at_us) WHERE sent_at_us IS NOT NULL;

-- +goose Down
DROP TABLE outbox;
