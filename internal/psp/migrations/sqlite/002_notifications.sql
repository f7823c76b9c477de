-- +goose Up
-- Asynchronous outcomes waiting to be told to the merchant (async mode),
-- written with the operation so a crash loses none.
CREATE TABLE psp_notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    payload         TEXT    NOT NULL,
    delivered       INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL
);
CREATE INDEX psp_notifications_due ON psp_notifications (next_attempt_us) WHERE delivered = 0;

-- +goose Down
DROP TABLE psp_notifications;
