package idempotency_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/idempotency"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

// table is idempotency_keys as a service's migrations make it.
const table = `-- +goose Up
CREATE TABLE idempotency_keys (
    caller       TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    status       INTEGER NOT NULL DEFAULT 0,
    response     TEXT    NOT NULL DEFAULT '',
    claimed_us   BIGINT  NOT NULL,
    PRIMARY KEY (caller, key)
);
-- +goose Down
DROP TABLE idempotency_keys;
`

var migrations = sqldb.Migrations{Component: "idempotency_test", FS: fstest.MapFS{
	"sqlite/001_keys.sql":   {Data: []byte(table)},
	"postgres/001_keys.sql": {Data: []byte(table)},
}}

// request claims caller's key for body in a transaction of its own and,
// when the key is its own, answers with answer; it returns what a client
// would get: the answer, a replay, or the error.
func request(db *sqldb.DB, caller, key, body, answer string, fail bool) (string, bool, error) {
	var got string
	var replayed bool
	err := db.InTx(context.Background(), func(tx *sqldb.Tx) error {
		a, err := idempotency.Claim(context.Background(), tx, caller, key, idempotency.Hash([]byte(body)), time.Now())
		if err != nil || a != nil {
			if a != nil {
				got, replayed = string(a.Body), true
			}
			return err
		}
		if fail {
			return fmt.Errorf("the request's own work failed")
		}
		got = answer
		return idempotency.Complete(context.Background(), tx, caller, key, 202, []byte(answer))
	})
	return got, replayed, err
}

// TestAKeyGivesOneAnswer: a retry with the same key and body replays the
// first answer; another body is Unprocessable; another caller's key of
// the same spelling is its own; a request that failed leaves the key free.
func TestAKeyGivesOneAnswer(t *testing.T) {
	sqldbtest.Each(t, []sqldb.Migrations{migrations}, func(t *testing.T, _ string, db *sqldb.DB) {
		if got, replayed, err := request(db, "ada", "k1", `{"n":1}`, "order-1", false); err != nil || replayed || got != "order-1" {
			t.Fatalf("first = %q %v %v", got, replayed, err)
		}
		if got, replayed, err := request(db, "ada", "k1", `{"n":1}`, "order-2", false); err != nil || !replayed || got != "order-1" {
			t.Fatalf("retry = %q replayed %v %v; want order-1 replayed", got, replayed, err)
		}
		if _, _, err := request(db, "ada", "k1", `{"n":2}`, "order-3", false); apperr.KindOf(err) != apperr.Unprocessable {
			t.Fatalf("the key with another body = %v, want Unprocessable", err)
		}
		if got, replayed, err := request(db, "bob", "k1", `{"n":1}`, "order-4", false); err != nil || replayed || got != "order-4" {
			t.Fatalf("another caller's k1 = %q %v %v, want its own answer", got, replayed, err)
		}
		if _, _, err := request(db, "ada", "k2", `{"n":1}`, "order-5", true); err == nil {
			t.Fatal("a failing request succeeded")
		}
		if got, replayed, err := request(db, "ada", "k2", `{"n":2}`, "order-6", false); err != nil || replayed || got != "order-6" {
			t.Fatalf("the key of a failed request, corrected = %q %v %v; want it free", got, replayed, err)
		}
	})
}

// TestConcurrentRequestsWithOneKeyPlaceOnce: many requests with the same
// key at once: one does the work, every other gets its answer.
func TestConcurrentRequestsWithOneKeyPlaceOnce(t *testing.T) {
	sqldbtest.Each(t, []sqldb.Migrations{migrations}, func(t *testing.T, _ string, db *sqldb.DB) {
		const n = 16
		var wg sync.WaitGroup
		got := make([]string, n)
		replayed := make([]bool, n)
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], replayed[i], errs[i] = request(db, "ada", "same", `{"n":1}`, fmt.Sprintf("order-%d", i), false)
			}()
		}
		wg.Wait()
		winners := 0
		for i := range n {
			switch {
			case errs[i] != nil:
				t.Errorf("request %d: %v", i, errs[i])
			case !replayed[i]:
				winners++
			}
		}
		for i := range n {
			if errs[i] == nil && got[i] != got[0] {
				t.Errorf("request %d got %q, request 0 %q: one key, two answers", i, got[i], got[0])
			}
		}
		if winners != 1 {
			t.Fatalf("%d requests did the work, want 1", winners)
		}
	})
}
