-- +goose Up
-- Idempotency keys belong to the caller that sent them (the authenticated
-- subject): the same key from two callers is two independent requests.
-- Keys stored before this migration belong to nobody and never match.
CREATE TABLE idempotency_keys_scoped (
    caller       TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    status       INTEGER NOT NULL DEFAULT 0,
    response     TEXT    NOT NULL DEFAULT '',
    claimed_us   INTEGER NOT NULL,
    PRIMARY KEY (caller, key)
);
INSERT INTO idempotency_keys_scoped (caller, key, request_hash, state, status, response, claimed_us)
    SELECT '', key, request_hash, state, status, response, claimed_us FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_scoped RENAME TO idempotency_keys;

-- +goose Down
CREATE TABLE idempotency_keys_unscoped (
    key          TEXT PRIMARY KEY,
    request_hash TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    status       INTEGER NOT NULL DEFAULT 0,
    response     TEXT    NOT NULL DEFAULT '',
    claimed_us   INTEGER NOT NULL
);
INSERT OR IGNORE INTO idempotency_keys_unscoped (key, request_hash, state, status, response, claimed_us)
    SELECT key, request_hash, state, status, response, claimed_us FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_unscoped RENAME TO idempotency_keys;
