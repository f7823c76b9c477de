package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Tx is a write transaction opened by InTx.
type Tx struct {
	tx       statements
	db       *DB
	onCommit []func()
	inOrder  []func()
	now      time.Time
}

// Now is the transaction's time: read once when it began, so every row it
// stamps carries the same instant.
func (tx *Tx) Now() time.Time { return tx.now }

// ForUpdate is the row-locking clause for a SELECT in this transaction:
// " FOR UPDATE" on PostgreSQL; nothing on SQLite, whose write transaction
// already holds the whole database.
func (tx *Tx) ForUpdate() string {
	if tx.db.dialect == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// statements is what a transaction runs its statements on: a pgTx
// (PostgreSQL, pgtx.go) or the SQLite write connection inside BEGIN …
// COMMIT.
type statements interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Dialect reports the engine of the transaction's database.
func (tx *Tx) Dialect() Dialect { return tx.db.dialect }

// Exec runs a statement inside the transaction.
func (tx *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return tx.tx.ExecContext(tx.db.detach(ctx), tx.db.bind(query), args...)
}

// Query runs a query inside the transaction.
func (tx *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return tx.tx.QueryContext(tx.db.detach(ctx), tx.db.bind(query), args...)
}

// QueryRow runs a single-row query inside the transaction.
func (tx *Tx) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if ctx.Err() != nil {
		// A sql.Row cannot be made with an error; a pool given a
		// cancelled context answers with ctx's error before it takes a
		// connection.
		return tx.db.read.QueryRowContext(ctx, tx.db.bind(query), args...)
	}
	return tx.tx.QueryRowContext(tx.db.detach(ctx), tx.db.bind(query), args...)
}

// Defer runs a write whose result the caller does not need. On PostgreSQL
// it is queued and sent in front of the transaction's next statement or
// with its COMMIT, in the same round trip; its failure then surfaces there,
// marked ErrDeferredWrite, and fails the transaction. On SQLite, where a
// statement costs no round trip, it runs at once.
func (tx *Tx) Defer(ctx context.Context, query string, args ...any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t, ok := tx.tx.(*pgTx); ok {
		t.deferred = append(t.deferred, queued{query: tx.db.bind(query), args: args})
		return nil
	}
	_, err := tx.Exec(ctx, query, args...)
	return err
}

// Flush sends the writes queued with Defer now (PostgreSQL), so that their
// failure is the caller's: a handler run in a savepoint of its own flushes
// before the savepoint is released.
func (tx *Tx) Flush(ctx context.Context) error {
	if t, ok := tx.tx.(*pgTx); ok {
		return t.flush(ctx)
	}
	return nil
}

// OnCommit registers f to run after the transaction commits successfully.
// Hooks never run for a rolled-back transaction.
func (tx *Tx) OnCommit(f func()) { tx.onCommit = append(tx.onCommit, f) }

// OnCommitInOrder registers f to run as soon as the transaction commits,
// on the committing goroutine. On SQLite with group commit, these hooks run
// in commit order: every hook of one transaction before any of the next
// one's. f must be quick and must not block or use the database.
func (tx *Tx) OnCommitInOrder(f func()) { tx.inOrder = append(tx.inOrder, f) }

// InTx runs fn in a write transaction: it begins, defers the rollback, calls
// fn, and commits once if fn returned nil. After the commit it runs the hooks
// fn registered with OnCommit. The error of fn is returned unchanged, so
// callers can match its kind.
//
// On SQLite, transactions of concurrent callers are committed together
// (see group.go): fn runs inside a savepoint of a shared transaction, and
// InTx returns once that transaction has committed. fn must not assume it
// is first in its transaction.
func (db *DB) InTx(ctx context.Context, fn func(*Tx) error) error {
	if db.dialect == SQLite && !db.noGroup {
		return db.inGroup(ctx, fn)
	}
	var hooks []func()
	for attempt := 1; ; attempt++ {
		err := db.plainTx(ctx, fn, &hooks)
		if err == nil {
			break
		}
		if !IsRetryable(err) || attempt == maxTxAttempts {
			return err
		}
		// A deadlock victim or a serialization failure: the transaction
		// did nothing, and running it again is the documented remedy.
		backoff := time.Duration(attempt*attempt) * time.Millisecond * time.Duration(5+rand.IntN(10))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
	}
	for _, f := range hooks {
		f()
	}
	return nil
}

// maxTxAttempts bounds InTx's retries of a transaction that PostgreSQL
// aborted as a deadlock victim or for a serialization failure.
const maxTxAttempts = 5

// IsRetryable reports whether err aborted a PostgreSQL transaction that
// may simply be run again: a deadlock (40P01) or a serialization failure
// (40001). InTx retries those itself; fn must then be safe to run again,
// as it is when it only writes through its Tx.
func IsRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// plainTx runs fn in a transaction of its own and hands back the hooks fn
// registered, for the caller to run.
func (db *DB) plainTx(ctx context.Context, fn func(*Tx) error, hooks *[]func()) error {
	t, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer t.Rollback()
	tx := &Tx{tx: t, db: db, now: time.Now()}
	if err := fn(tx); err != nil {
		return err
	}
	if err := t.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for _, f := range tx.inOrder {
		f()
	}
	*hooks = tx.onCommit
	return nil
}

// txn is an open write transaction.
type txn interface {
	statements
	Commit() error
	Rollback() error
}

// begin opens a write transaction. On PostgreSQL it is a pgTx, which
// pipelines BEGIN and deferred writes (pgtx.go). On SQLite
// it is the database's one write connection, taken from its pool, with
// BEGIN IMMEDIATE and COMMIT run as statements on it: a sql.Tx and a
// cancellable context cost SQLite a goroutine hand-off per transaction and
// per statement, about half the CPU of a one-event transaction
// (bench/sqlite: 136 against 65 µs). Its statements run detached from the
// caller's cancellation (see detach).
func (db *DB) begin(ctx context.Context) (txn, error) {
	if db.dialect != SQLite {
		conn, err := db.write.Conn(ctx)
		if err != nil {
			return nil, err
		}
		return &pgTx{Conn: conn}, nil
	}
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		conn.Close()
		return nil, err
	}
	return &connTx{Conn: conn}, nil
}

// connTx is a SQLite write transaction on a connection of its own.
type connTx struct {
	*sql.Conn
	done bool
}

// Commit commits and gives the connection back to the pool. A failed
// COMMIT is rolled back, as database/sql does for a sql.Tx.
func (t *connTx) Commit() error {
	if t.done {
		return sql.ErrTxDone
	}
	if _, err := t.ExecContext(context.Background(), "COMMIT"); err != nil {
		t.Rollback()
		return err
	}
	t.done = true
	return t.Close()
}

// Rollback rolls back unless the transaction has ended, and gives the
// connection back (see rollback).
func (t *connTx) Rollback() error {
	if t.done {
		return sql.ErrTxDone
	}
	t.done = true
	return rollback(t.Conn)
}

// rollback rolls back the transaction open on conn and gives conn back to
// its pool; a connection that cannot roll back is discarded, so the pool
// never hands out one inside a transaction.
func rollback(conn *sql.Conn) error {
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil && !strings.Contains(err.Error(), "no transaction is active") {
		conn.Raw(func(any) error { return driver.ErrBadConn })
		conn.Close()
		return err
	}
	return conn.Close()
}

// detach returns the context a SQLite write statement runs under, once
// the caller has checked ctx: ctx without its cancellation, so
// mattn/go-sqlite3 runs the statement on the calling goroutine instead of
// starting one to watch ctx. A write statement is short, and the next one
// checks ctx again.
func (db *DB) detach(ctx context.Context) context.Context {
	if db.dialect != SQLite {
		return ctx
	}
	return context.WithoutCancel(ctx)
}
