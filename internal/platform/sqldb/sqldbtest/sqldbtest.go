// Package sqldbtest opens real test databases: a SQLite file in a temp dir
// always, and a fresh PostgreSQL schema when ORDERMESH_TEST_POSTGRES is set.
package sqldbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// PostgresEnv names the variable holding a PostgreSQL URL for tests.
const PostgresEnv = "ORDERMESH_TEST_POSTGRES"

// DSNs returns the databases to run a suite against, by name: "sqlite"
// (a new file) always, and "postgres" (a new schema, dropped afterwards)
// when ORDERMESH_TEST_POSTGRES is set.
func DSNs(tb testing.TB) map[string]string {
	tb.Helper()
	dsns := map[string]string{"sqlite": "sqlite:" + filepath.Join(tb.TempDir(), "test.db")}
	if base := os.Getenv(PostgresEnv); base != "" {
		dsns["postgres"] = PostgresSchema(tb, base)
	}
	return dsns
}

// Each runs f as a subtest per database of DSNs, with the migrations
// applied.
func Each(t *testing.T, sets []sqldb.Migrations, f func(t *testing.T, dsn string, db *sqldb.DB)) {
	for name, dsn := range DSNs(t) {
		t.Run(name, func(t *testing.T) {
			f(t, dsn, Open(t, dsn, sets...))
		})
	}
}

// Open opens dsn, applies the migrations and closes it when tb ends.
func Open(tb testing.TB, dsn string, sets ...sqldb.Migrations) *sqldb.DB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, sets...); err != nil {
		tb.Fatal(err)
	}
	return db
}

// PostgresSchema creates a uniquely named schema in the database at base
// and returns a URL whose search_path is that schema; the schema is dropped
// when tb ends.
func PostgresSchema(tb testing.TB, base string) string {
	tb.Helper()
	var b [6]byte
	rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		tb.Fatalf("create schema in %s: %v", PostgresEnv, err)
	}
	tb.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err == nil {
			db.Exec("DROP SCHEMA " + schema + " CASCADE")
			db.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
