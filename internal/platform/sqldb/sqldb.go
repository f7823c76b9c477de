// Package sqldb is the one database API every ordermesh service uses, over
// SQLite (the embedded default, one file per service) and PostgreSQL (pgx,
// for scale-out). Queries are written once with '?' placeholders and rebound
// for PostgreSQL; writes go through InTx, which commits once and then runs the
// transaction's commit hooks (the outbox uses one to wake its relay).
package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/mattn/go-sqlite3"
)

// Dialect names the SQL engine behind a DB.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is a handle on one service's database. For SQLite it keeps two pools:
// a single-connection pool for writes (SQLite has one writer; queuing in
// process avoids SQLITE_BUSY) and a read-only pool for concurrent readers
// (WAL lets them run beside the writer). For PostgreSQL both are one pool.
type DB struct {
	dialect Dialect
	write   *sql.DB
	read    *sql.DB
	rebind  sync.Map // query string -> rebound query string (PostgreSQL)
	group   group    // SQLite: concurrent write transactions commit together
	noGroup bool     // ORDERMESH_SQLITE_GROUP_COMMIT=off, for comparison
}

// Open opens the database named by dsn: "sqlite:PATH" (or a path ending in
// .db) or "postgres://…" / "postgresql://…". It pings the database before
// returning, so a wrong address fails here with a message saying what to fix.
func Open(ctx context.Context, dsn string) (*DB, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return openPostgres(ctx, dsn)
	case strings.HasPrefix(dsn, "sqlite:"):
		return openSQLite(ctx, strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//"))
	case strings.HasSuffix(dsn, ".db") && !strings.Contains(dsn, "://"):
		return openSQLite(ctx, dsn)
	default:
		return nil, fmt.Errorf("unsupported database %q: use sqlite:PATH or postgres://USER:PASS@HOST/DB", dsn)
	}
}

func openSQLite(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite database path is empty: use sqlite:PATH")
	}
	// synchronous=NORMAL in WAL mode: a commit survives a process crash
	// (kill -9); only an OS crash or power loss can lose the last commits.
	// Reads are memory-mapped (up to 256 MiB), saving a syscall per page
	// read beyond the page cache.
	common := "_journal_mode=WAL&_busy_timeout=10000&_foreign_keys=on&_synchronous=NORMAL&_stmt_cache_size=128"
	base := "file:" + (&url.URL{Path: path}).EscapedPath()
	registerSQLite.Do(func() {
		sql.Register(sqliteDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
			_, err := c.Exec("PRAGMA mmap_size = 268435456", nil)
			return err
		}})
	})
	write, err := sql.Open(sqliteDriver, base+"?"+common+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite %s: %w (check that the directory exists and is writable)", path, err)
	}
	read, err := sql.Open(sqliteDriver, base+"?"+common+"&_query_only=true")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite %s for reading: %w", path, err)
	}
	read.SetMaxOpenConns(4)
	read.SetMaxIdleConns(4)
	return &DB{dialect: SQLite, write: write, read: read, noGroup: os.Getenv("ORDERMESH_SQLITE_GROUP_COMMIT") == "off"}, nil
}

// sqliteDriver is mattn/go-sqlite3 with ordermesh's per-connection
// settings, registered on first use.
const sqliteDriver = "sqlite3_ordermesh"

var registerSQLite sync.Once

func openPostgres(ctx context.Context, dsn string) (*DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to postgres %s: %w (is the server running and the database created?)", redact(dsn), err)
	}
	return &DB{dialect: Postgres, write: db, read: db}, nil
}

// redact hides the password of a connection URL for error messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}

// Dialect reports which engine db talks to.
func (db *DB) Dialect() Dialect { return db.dialect }

// Close closes both pools.
func (db *DB) Close() error {
	err := db.write.Close()
	if db.read != db.write {
		err = errors.Join(err, db.read.Close())
	}
	return err
}

// Query runs a read-only query outside any transaction.
func (db *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return db.read.QueryContext(ctx, db.bind(query), args...)
}

// QueryRow runs a read-only single-row query outside any transaction.
func (db *DB) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return db.read.QueryRowContext(ctx, db.bind(query), args...)
}

// Exec runs one statement in its own implicit transaction on the write pool.
func (db *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return db.write.ExecContext(ctx, db.bind(query), args...)
}

// Tx is a write transaction opened by InTx.
type Tx struct {
	tx       statements
	db       *DB
	onCommit []func()
	inOrder  []func()
}

// statements is what a transaction runs its statements on: a sql.Tx
// (PostgreSQL) or the SQLite write connection inside BEGIN … COMMIT.
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
	tx := &Tx{tx: t, db: db}
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

// begin opens a write transaction. On PostgreSQL it is a sql.Tx. On SQLite
// it is the database's one write connection, taken from its pool, with
// BEGIN IMMEDIATE and COMMIT run as statements on it: a sql.Tx and a
// cancellable context cost SQLite a goroutine hand-off per transaction and
// per statement, about half the CPU of a one-event transaction
// (bench/sqlite: 136 against 65 µs). Its statements run detached from the
// caller's cancellation (see detach).
func (db *DB) begin(ctx context.Context) (txn, error) {
	if db.dialect != SQLite {
		return db.write.BeginTx(ctx, nil)
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
// connection back. A connection that cannot roll back is discarded, so
// the pool never hands out one inside a transaction.
func (t *connTx) Rollback() error {
	if t.done {
		return sql.ErrTxDone
	}
	t.done = true
	if _, err := t.ExecContext(context.Background(), "ROLLBACK"); err != nil && !strings.Contains(err.Error(), "no transaction is active") {
		t.Raw(func(any) error { return driver.ErrBadConn })
		t.Close()
		return err
	}
	return t.Close()
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

// Querier reads: a DB (outside any transaction) or a Tx.
type Querier interface {
	QueryRow(ctx context.Context, query string, args ...any) *sql.Row
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

var (
	_ Querier = (*DB)(nil)
	_ Querier = (*Tx)(nil)
)

// BoolInt stores a boolean as the integer 0 or 1 (SQLite has no boolean
// type; ordermesh's PostgreSQL schemas use integers too).
func BoolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Placeholders returns n comma-separated '?' placeholders, for IN lists.
func Placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}

// bind rewrites '?' placeholders to PostgreSQL's $1, $2, … and caches the
// result; SQLite queries pass through unchanged. Queries must not contain a
// literal '?' (none of ordermesh's do).
func (db *DB) bind(query string) string {
	if db.dialect != Postgres || !strings.Contains(query, "?") {
		return query
	}
	if q, ok := db.rebind.Load(query); ok {
		return q.(string)
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	q := b.String()
	db.rebind.Store(query, q)
	return q
}
