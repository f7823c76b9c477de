package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

var notes = sqldb.Migrations{Component: "notes", FS: fstest.MapFS{
	"sqlite/001_notes.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);\n")},
	"sqlite/002_tags.sql":    {Data: []byte("-- +goose Up\nALTER TABLE notes ADD COLUMN tag TEXT NOT NULL DEFAULT '';\n")},
	"postgres/001_notes.sql": {Data: []byte("-- +goose Up\nCREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL);\n")},
	"postgres/002_tags.sql":  {Data: []byte("-- +goose Up\nALTER TABLE notes ADD COLUMN tag TEXT NOT NULL DEFAULT '';\n")},
}}

func count(t *testing.T, db *sqldb.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT COUNT(*) FROM notes").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStore is the contract suite every database must pass.
func TestStore(t *testing.T) {
	sqldbtest.Each(t, []sqldb.Migrations{notes}, func(t *testing.T, dsn string, db *sqldb.DB) {
		ctx := context.Background()
		t.Run("MigrateIsIdempotent", func(t *testing.T) {
			if err := db.Migrate(ctx, notes); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(ctx, "INSERT INTO notes (id, body, tag) VALUES (?, ?, ?)", 100, "x", "both migrations applied"); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("CommitRunsHooks", func(t *testing.T) {
			before, hooked := count(t, db), false
			err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				tx.OnCommit(func() { hooked = true })
				_, err := tx.Exec(ctx, "INSERT INTO notes (id, body) VALUES (?, ?)", 1, "kept")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if count(t, db) != before+1 || !hooked {
				t.Fatalf("commit: rows %d (want %d), hook ran %v", count(t, db), before+1, hooked)
			}
		})
		t.Run("ErrorRollsBackWithoutHooks", func(t *testing.T) {
			before, hooked := count(t, db), false
			errBoom := errors.New("boom")
			err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				tx.OnCommit(func() { hooked = true })
				if _, err := tx.Exec(ctx, "INSERT INTO notes (id, body) VALUES (?, ?)", 2, "dropped"); err != nil {
					return err
				}
				return errBoom
			})
			if !errors.Is(err, errBoom) {
				t.Fatalf("InTx error = %v, want the callback's error unchanged", err)
			}
			if count(t, db) != before || hooked {
				t.Fatalf("rollback: rows %d (want %d), hook ran %v", count(t, db), before, hooked)
			}
		})
		t.Run("TxGivesItsTimeAndLockClause", func(t *testing.T) {
			before := time.Now()
			err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				if now := tx.Now(); now.Before(before) || now != tx.Now() {
					t.Errorf("tx.Now() = %v then %v; want one instant, not before the transaction began (%v)", now, tx.Now(), before)
				}
				want := map[sqldb.Dialect]string{sqldb.SQLite: "", sqldb.Postgres: " FOR UPDATE"}[tx.Dialect()]
				if got := tx.ForUpdate(); got != want {
					t.Errorf("%s: ForUpdate() = %q, want %q", tx.Dialect(), got, want)
				}
				_, err := tx.Exec(ctx, "SELECT body FROM notes WHERE id = ?"+tx.ForUpdate(), 1)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		})
		// SQLite's statements run detached from the caller's cancellation
		// (sqldb.begin); a context cancelled between two statements must
		// still stop the transaction, and the connection must stay usable.
		t.Run("CancelBetweenStatementsRollsBack", func(t *testing.T) {
			before := count(t, db)
			c, cancel := context.WithCancel(ctx)
			err := db.InTx(c, func(tx *sqldb.Tx) error {
				if _, err := tx.Exec(c, "INSERT INTO notes (id, body) VALUES (?, ?)", 3, "first"); err != nil {
					return err
				}
				cancel()
				_, err := tx.Exec(c, "INSERT INTO notes (id, body) VALUES (?, ?)", 4, "second")
				return err
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("InTx error = %v, want context.Canceled from the statement after the cancel", err)
			}
			if count(t, db) != before {
				t.Fatalf("rows %d, want %d: the first insert must roll back too", count(t, db), before)
			}
			if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO notes (id, body) VALUES (?, ?)", 5, "after")
				return err
			}); err != nil || count(t, db) != before+1 {
				t.Fatalf("transaction after the cancelled one: %v, rows %d; want %d", err, count(t, db), before+1)
			}
		})
		// On SQLite concurrent transactions share one commit (group.go);
		// each must still succeed, fail or panic on its own.
		t.Run("ConcurrentTransactionsStayApart", func(t *testing.T) {
			before := count(t, db)
			const callers = 300
			var hooks atomic.Int64
			errs := make([]error, callers)
			panics := make([]any, callers)
			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			var wg sync.WaitGroup
			for i := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { panics[i] = recover() }()
					c := ctx
					if i%11 == 0 {
						c = cancelled
					}
					errs[i] = db.InTx(c, func(tx *sqldb.Tx) error {
						tx.OnCommit(func() { hooks.Add(1) })
						for k := range 2 {
							if _, err := tx.Exec(c, "INSERT INTO notes (id, body) VALUES (?, ?)", 1000+2*i+k, "group"); err != nil {
								return err
							}
						}
						switch {
						case i%5 == 0:
							return fmt.Errorf("caller %d fails", i)
						case i%7 == 0:
							panic(fmt.Sprintf("caller %d panics", i))
						}
						return nil
					})
				}()
			}
			wg.Wait()
			want := 0
			for i := range callers {
				var n int
				if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM notes WHERE id IN (?, ?)", 1000+2*i, 1001+2*i).Scan(&n); err != nil {
					t.Fatal(err)
				}
				switch {
				case i%11 == 0:
					if errs[i] == nil || n != 0 {
						t.Fatalf("caller %d with a cancelled context: err %v, %d rows", i, errs[i], n)
					}
				case i%5 == 0:
					if errs[i] == nil || errs[i].Error() != fmt.Sprintf("caller %d fails", i) || n != 0 {
						t.Fatalf("failing caller %d: err %v, %d rows; want its own error and no rows", i, errs[i], n)
					}
				case i%7 == 0:
					if panics[i] != fmt.Sprintf("caller %d panics", i) || n != 0 {
						t.Fatalf("panicking caller %d: recovered %v, %d rows; want its own panic and no rows", i, panics[i], n)
					}
				default:
					if errs[i] != nil || panics[i] != nil || n != 2 {
						t.Fatalf("caller %d: err %v, panic %v, %d rows; want both rows", i, errs[i], panics[i], n)
					}
					want++
				}
			}
			if got := count(t, db) - before; got != 2*want || hooks.Load() != int64(want) {
				t.Fatalf("%d rows and %d hooks, want %d rows and %d hooks", got, hooks.Load(), 2*want, want)
			}
		})
		t.Run("PlaceholdersBind", func(t *testing.T) {
			var n int
			q := "SELECT COUNT(*) FROM notes WHERE id IN (" + sqldb.Placeholders(3) + ") AND body <> ?"
			if err := db.QueryRow(ctx, q, 1, 2, 100, "none").Scan(&n); err != nil || n != 2 {
				t.Fatalf("IN query = %d, %v; want 2 rows", n, err)
			}
		})
	})
}

func TestOpenRejectsUnknownDSN(t *testing.T) {
	_, err := sqldb.Open(context.Background(), "mysql://localhost/db")
	if err == nil || !strings.Contains(err.Error(), "sqlite:PATH") {
		t.Fatalf("Open(mysql) error = %v, want one that says what to use", err)
	}
}

func TestOpenSQLiteInMissingDirSaysWhy(t *testing.T) {
	_, err := sqldb.Open(context.Background(), "sqlite:"+t.TempDir()+"/missing/dir/x.db")
	if err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("error = %v, want a hint about the directory", err)
	}
}

// TestSQLiteFilesAreTheOwners: a new SQLite database, and the
// write-ahead log beside it, can be read by their owner only.
func TestSQLiteFilesAreTheOwners(t *testing.T) {
	path := filepath.Join(t.TempDir(), "private.db")
	db, err := sqldb.Open(context.Background(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(context.Background(), "CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want 0600", filepath.Base(f), fi.Mode().Perm())
		}
	}
}
