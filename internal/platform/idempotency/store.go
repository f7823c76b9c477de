// Package idempotency keeps Idempotency-Key answers: a request claims its
// caller's key in the same transaction as its effects, and a retry with the
// same key and body gets the first answer back. Keys are scoped to the
// caller (the authenticated subject), so two callers' keys never collide.
// The table (idempotency_keys: caller, key, request_hash, state, status,
// response, claimed_us) is in the owning service's migrations.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// Answer is a stored response, replayed to a retry.
type Answer struct {
	Status int
	Body   []byte
}

// InFlightTTL is how long a claim without an answer blocks the key. Claims
// are committed only with their answer, so only rows written by versions
// that claimed keys in a transaction of their own are ever seen in flight.
const InFlightTTL = 30 * time.Second

// Hash is the request body's fingerprint stored with its key.
func Hash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// Claim claims caller's key for a request whose body has hash hash, inside
// tx. It returns the stored answer to replay if the key already has one,
// or nil if the key is now this request's (Complete it in the same tx).
// Errors: Unprocessable (the key was used with another body), Conflict
// (a request with the key is still running). A new key costs one statement;
// on PostgreSQL a concurrent request with the same key waits at the INSERT
// until the first commits, then replays its answer.
func Claim(ctx context.Context, tx *sqldb.Tx, caller, key, hash string, now time.Time) (*Answer, error) {
	res, err := tx.Exec(ctx, "INSERT INTO idempotency_keys (caller, key, request_hash, state, claimed_us) VALUES (?, ?, ?, 'in_flight', ?) ON CONFLICT (caller, key) DO NOTHING",
		caller, key, hash, now.UnixMicro())
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil, nil
	}
	var (
		storedHash, state, response string
		status                      int
		claimed                     int64
	)
	err = tx.QueryRow(ctx, "SELECT request_hash, state, status, response, claimed_us FROM idempotency_keys WHERE caller = ? AND key = ?", caller, key).
		Scan(&storedHash, &state, &status, &response, &claimed)
	switch {
	case err != nil:
		return nil, err
	case storedHash != hash:
		return nil, apperr.New(apperr.Unprocessable, "Idempotency-Key", "this key was used with a different request body")
	case state == "done":
		return &Answer{Status: status, Body: []byte(response)}, nil
	case now.Sub(time.UnixMicro(claimed)) < InFlightTTL:
		return nil, apperr.New(apperr.Conflict, "Idempotency-Key", "a request with this key is still in progress; retry later")
	default: // a stale claim (from a version that claimed keys in a transaction of their own): take it over
		_, err = tx.Exec(ctx, "UPDATE idempotency_keys SET claimed_us = ? WHERE caller = ? AND key = ?", now.UnixMicro(), caller, key)
		return nil, err
	}
}

// Complete stores the answer to caller's key in tx, the transaction that
// claimed it.
func Complete(ctx context.Context, tx *sqldb.Tx, caller, key string, status int, body []byte) error {
	_, err := tx.Exec(ctx, "UPDATE idempotency_keys SET state = 'done', status = ?, response = ? WHERE caller = ? AND key = ?",
		status, string(body), caller, key)
	return err
}
