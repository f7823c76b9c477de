package sqldb_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

// TestDeferredWrites: a write queued with Tx.Defer is part of its
// transaction whatever round trip carries it. It is seen by the
// transaction's next read, stored by the commit, gone with a rollback,
// and its failure fails the transaction, leaving nothing of it.
func TestDeferredWrites(t *testing.T) {
	sqldbtest.Each(t, []sqldb.Migrations{notes}, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		has := func(id int) bool {
			var n int
			if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM notes WHERE id = ?", id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n == 1
		}
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			if err := tx.Defer(ctx, "INSERT INTO notes (id, body) VALUES (?, ?)", 300, "first"); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM notes WHERE id = ?", 300).Scan(&n); err != nil || n != 1 {
				t.Errorf("the transaction's own read: %d rows, %v; want the deferred row", n, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO notes (id, body) VALUES (?, ?)", 301, "second"); err != nil {
				return err
			}
			return tx.Defer(ctx, "INSERT INTO notes (id, body) VALUES (?, ?)", 302, "with the commit")
		})
		if err != nil || !has(300) || !has(301) || !has(302) {
			t.Fatalf("commit: err %v, rows 300/301/302 stored %v %v %v", err, has(300), has(301), has(302))
		}

		err = db.InTx(ctx, func(tx *sqldb.Tx) error {
			if err := tx.Defer(ctx, "INSERT INTO notes (id, body) VALUES (?, ?)", 303, "rolled back"); err != nil {
				return err
			}
			return errors.New("handler failed")
		})
		if err == nil || has(303) {
			t.Fatalf("rollback: err %v, row 303 stored %v", err, has(303))
		}

		err = db.InTx(ctx, func(tx *sqldb.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO notes (id, body) VALUES (?, ?)", 304, "before the failure"); err != nil {
				return err
			}
			return tx.Defer(ctx, "INSERT INTO notes (id, body) VALUES (?, ?)", 300, "a duplicate key")
		})
		if err == nil || has(304) {
			t.Fatalf("a failing deferred write: err %v, row 304 stored %v; want an error and nothing stored", err, has(304))
		}
		if db.Dialect() == sqldb.Postgres && !errors.Is(err, sqldb.ErrDeferredWrite) {
			t.Fatalf("on PostgreSQL the commit's error is %v, want it marked ErrDeferredWrite", err)
		}

		if err := db.InTx(ctx, func(*sqldb.Tx) error { return nil }); err != nil {
			t.Fatalf("an empty transaction: %v", err)
		}
	})
}
