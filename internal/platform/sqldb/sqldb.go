// Package sqldb is the one database API every ordermesh service uses, over
// SQLite (the embedded default, one file per service) and PostgreSQL (pgx,
// for scale-out). Queries are written once with '?' placeholders and rebound
// for PostgreSQL; writes go through InTx, which commits once and then runs the
// transaction's commit hooks (the outbox uses one to wake its relay).
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
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
	postgres, path, err := parseDSN(dsn)
	switch {
	case err != nil:
		return nil, err
	case postgres:
		return openPostgres(ctx, dsn)
	}
	return openSQLite(ctx, path)
}

// CheckDSN says what is wrong with dsn's form, without opening anything:
// a command checks its flags before it connects to anything.
func CheckDSN(dsn string) error {
	_, _, err := parseDSN(dsn)
	return err
}

// parseDSN tells a PostgreSQL dsn from a SQLite one, whose path it returns.
func parseDSN(dsn string) (postgres bool, path string, err error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		if _, err := pgx.ParseConfig(dsn); err != nil {
			return false, "", err // names the dsn, its password masked
		}
		return true, "", nil
	case strings.HasPrefix(dsn, "sqlite:") && strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//") != "":
		return false, strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//"), nil
	case strings.HasSuffix(dsn, ".db") && !strings.Contains(dsn, "://"):
		return false, dsn, nil
	}
	return false, "", fmt.Errorf("unsupported database %q: use sqlite:PATH or postgres://USER:PASS@HOST/DB", redact(dsn))
}

func openSQLite(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite database path is empty: use sqlite:PATH")
	}
	// synchronous=NORMAL in WAL mode: a commit survives a process crash
	// (kill -9); only an OS crash or power loss can lose the last commits.
	// Reads are memory-mapped (up to 256 MiB), saving a syscall per page
	// read beyond the page cache.
	// A new database file is the owner's alone (orders, addresses and key
	// hashes are in it); SQLite gives its -wal and -shm files the same
	// permissions.
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
		f.Close()
	}
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
