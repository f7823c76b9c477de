package sqldb

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Migrations is one component's embedded migration set. FS holds a directory
// per dialect, "sqlite" and "postgres", each with goose SQL files
// (NNN_name.sql, "-- +goose Up" annotated), applied in version order. Each
// component records its versions in its own table, goose_<Component>, so the
// platform tables (outbox, inbox) and a service's tables migrate independently.
type Migrations struct {
	Component string
	FS        fs.FS
}

// Migrate applies every pending migration of each set, in the order given.
// On PostgreSQL a session advisory lock serialises concurrent instances that
// start at the same moment.
func (db *DB) Migrate(ctx context.Context, sets ...Migrations) error {
	for _, set := range sets {
		if err := db.migrate(ctx, set); err != nil {
			return fmt.Errorf("migrate %s: %w", set.Component, err)
		}
	}
	return nil
}

func (db *DB) migrate(ctx context.Context, set Migrations) error {
	sub, err := fs.Sub(set.FS, string(db.dialect))
	if err != nil {
		return err
	}
	opts := []goose.ProviderOption{goose.WithTableName("goose_" + set.Component), goose.WithDisableGlobalRegistry(true)}
	dialect := goose.DialectSQLite3
	if db.dialect == Postgres {
		dialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, db.write, sub, opts...)
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// Embedded returns the migration set of component from fsys, an embed.FS
// holding a "migrations" directory with "sqlite" and "postgres" inside. It
// panics if that directory is missing, which is a build-time mistake.
func Embedded(component string, fsys fs.FS) Migrations {
	sub, err := fs.Sub(fsys, "migrations")
	if err != nil {
		panic(fmt.Sprintf("sqldb: %s migrations: %v", component, err))
	}
	return Migrations{Component: component, FS: sub}
}
