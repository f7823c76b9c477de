-- +goose Up
-- An order's page lists the deliveries of its events by event id.
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

-- +goose Down
DROP INDEX webhook_deliveries_event;
