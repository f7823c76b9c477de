-- +goose Up
CREATE TABLE webhook_endpoints (
    id                  TEXT PRIMARY KEY,
    url                 TEXT    NOT NULL,
    event_types         TEXT    NOT NULL,  -- JSON array
    description         TEXT    NOT NULL DEFAULT '',
    secret              TEXT    NOT NULL,
    previous_secret     TEXT    NOT NULL DEFAULT '',
    previous_until_us   BIGINT NOT NULL DEFAULT 0,
    disabled            BIGINT NOT NULL DEFAULT 0,
    disabled_reason     TEXT    NOT NULL DEFAULT '',
    failing_since_us    BIGINT NOT NULL DEFAULT 0,
    created_us          BIGINT NOT NULL
);
-- One row per (endpoint, event): written in the same transaction that
-- consumes the event, so a crash never loses a delivery.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    endpoint_id     TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL,  -- pending, delivered, failed
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_us BIGINT NOT NULL,
    created_us      BIGINT NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_us) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_us);
CREATE TABLE webhook_attempts (
    delivery_id TEXT    NOT NULL,
    n           BIGINT NOT NULL,
    at_us       BIGINT NOT NULL,
    status_code BIGINT NOT NULL,
    latency_ms  BIGINT NOT NULL,
    error       TEXT    NOT NULL DEFAULT '',
    response    TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (delivery_id, n)
);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
