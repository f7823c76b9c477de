package app

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", "Usage: ordermesh migrate [--data DIR | --db DSN --service NAME]\n\nApplies pending migrations: every service's SQLite database under --data,\nor the one database given with --db.", stderr)
	data := fs.String("data", "./data", "data directory of `ordermesh run`")
	db := fs.String("db", "", "one service's database: sqlite:PATH or postgres://…")
	service := fs.String("service", "", "the service --db belongs to")
	create := fs.Bool("create", false, "create --data if it does not exist")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	targets := map[string]string{}
	if *service != "" && !slices.Contains(Services, *service) {
		return usagef("--service %q: no such service (one of %s)", *service, strings.Join(Services, ", "))
	}
	if *service != "" && *db == "" {
		return usagef("--service %s needs --db DSN (its database); without either, migrate migrates every database under --data", *service)
	}
	if *db != "" {
		if *service == "" {
			return usagef("--db needs --service NAME (one of %s)", strings.Join(Services, ", "))
		}
		targets[*service] = *db
	} else {
		if err := existingDir(*data, *create); err != nil {
			return err
		}
		release, err := lockDataDir(*data, "migrate")
		if err != nil {
			return err
		}
		defer release()
		cfg := Config{DataDir: *data}
		for _, svc := range Services {
			targets[svc], _ = cfg.DSN(svc)
		}
	}
	for _, svc := range Services {
		dsn, ok := targets[svc]
		if !ok {
			continue
		}
		d, err := sqldb.Open(ctx, dsn)
		if err != nil {
			return fmt.Errorf("%s: %w", svc, err)
		}
		err = d.Migrate(ctx, migrationsOf(svc)...)
		d.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", svc, err)
		}
		fmt.Fprintf(stdout, "%s: migrated\n", svc)
	}
	return nil
}
