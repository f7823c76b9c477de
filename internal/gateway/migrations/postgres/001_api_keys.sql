-- +goose Up
-- API keys: only the SHA-256 of each key is stored; the key itself is
-- shown once, when it is created.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    subject    TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

-- +goose Down
DROP TABLE api_keys;
