-- +goose Up
-- On SQLite one relay publishes a database's outbox, in id order, so "sent"
-- is a single high-water mark rather than a stamp on every row: every row
-- with id <= upto was acknowledged by the broker. The relay saves it a few
-- times a second, not once per batch; after a crash it re-publishes the
-- rows since the last save, and the broker drops the copies
-- (Nats-Msg-Id = event id), as it did for a crash between publish and mark.
-- The per-row stamp cost an UPDATE and two index changes per event.
CREATE TABLE outbox_cursor (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    upto INTEGER NOT NULL
);
INSERT INTO outbox_cursor (one, upto) VALUES (1, COALESCE(
    (SELECT MIN(id) - 1 FROM outbox WHERE sent_at_us IS NULL),
    (SELECT MAX(id) FROM outbox),
    0));
DROP INDEX outbox_unsent;
DROP INDEX outbox_sent;

-- +goose Down
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at_us IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at_us) WHERE sent_at_us IS NOT NULL;
UPDATE outbox SET sent_at_us = time_us WHERE sent_at_us IS NULL AND id <= (SELECT upto FROM outbox_cursor);
DROP TABLE outbox_cursor;
