package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

func cmdAPIKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const synopsis = `Usage: ordermesh apikey COMMAND [flags]

Commands:
  create --sub ID --scopes SCOPE[,SCOPE…]   make a key; it is printed once and stored only as a SHA-256 hash
  list                                      every key: id, subject, scopes, created, revoked
  revoke ID                                 stop accepting a key (gateways notice within 10s)

The keys live in the gateway's database: DATA/gateway.db of ` + "`ordermesh run`" + `, or --db.
Use a key as Authorization: Bearer om_…`
	fs := newFlagSet("apikey", synopsis, stderr)
	sub := fs.String("sub", "", "create: the subject the key acts as")
	scopes := fs.String("scopes", "", "create: comma-separated scopes ("+strings.Join(gateway.Scopes, ", ")+")")
	data := fs.String("data", "./data", "data directory of `ordermesh run`")
	dsn := fs.String("db", "", "the gateway's database instead: sqlite:PATH or postgres://…")
	asJSON := fs.Bool("json", false, "list: print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return usagef("apikey needs a command: create, list or revoke")
	}
	switch {
	case pos[0] == "create" && len(pos) == 1:
		if *sub == "" {
			return usagef("apikey create needs --sub ID")
		}
		if err := gateway.CheckScopes(splitScopes(*scopes)); err != nil {
			return usagef("--scopes: %v", err)
		}
	case pos[0] == "list" && len(pos) == 1:
	case pos[0] == "revoke" && len(pos) == 2:
	default:
		return usagef("want apikey create --sub ID --scopes …, apikey list, or apikey revoke ID")
	}
	db, err := openGatewayDB(ctx, *dsn, *data)
	if err != nil {
		return err
	}
	defer db.Close()
	switch pos[0] {
	case "create":
		key, info, err := gateway.CreateAPIKey(ctx, db, *sub, splitScopes(*scopes))
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "API key %s for %s (%s); it is shown only now:\n", info.ID, info.Subject, strings.Join(info.Scopes, " "))
		fmt.Fprintln(stdout, key)
	case "list":
		return listAPIKeys(ctx, db, stdout, *asJSON)
	case "revoke":
		if err := gateway.RevokeAPIKey(ctx, db, pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s\n", pos[1])
	}
	return nil
}

// loadUpstreamFile adds the services of an upstream configuration file to
// what the flags gave. A service named both in the file and by --upstream
// is an error: which one wins would be a guess. --lb and --hash-key win
// over the file's lb and hash_key.
func loadUpstreamFile(path string, upstreams upstreamFlag, balance, hashKeys serviceFlag) (upstreamFlag, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--upstream-config: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f upstreamFile
	if err := dec.Decode(&f); err != nil {
		return nil, usagef("--upstream-config %s: %v", path, err)
	}
	if len(f.Upstreams) == 0 {
		return nil, usagef(`--upstream-config %s: no services under "upstreams"`, path)
	}
	if upstreams == nil {
		upstreams = upstreamFlag{}
	}
	for _, svc := range slices.Sorted(maps.Keys(f.Upstreams)) {
		u := f.Upstreams[svc]
		where := fmt.Sprintf("--upstream-config %s: upstreams.%s", path, svc)
		if !slices.Contains(upstreamServices(), svc) {
			return nil, usagef("%s: unknown service (one of %s)", where, strings.Join(upstreamServices(), ", "))
		}
		if _, dup := upstreams[svc]; dup {
			return nil, usagef("%s: also given by --upstream; name each service in one place", where)
		}
		if len(u.Instances) == 0 {
			return nil, usagef("%s.instances: list at least one http://HOST:PORT", where)
		}
		for _, in := range u.Instances {
			if _, err := gateway.NewInstance(in); err != nil {
				return nil, usagef("%s.instances: %v", where, err)
			}
		}
		if _, byFlag := balance.m[svc]; u.LB != "" && !byFlag {
			if err := balance.Set(svc + "=" + u.LB); err != nil {
				return nil, usagef("%s.lb: %v", where, err)
			}
		}
		if _, byFlag := hashKeys.m[svc]; u.HashKey != "" && !byFlag {
			if err := hashKeys.Set(svc + "=" + u.HashKey); err != nil {
				return nil, usagef("%s.hash_key: %v", where, err)
			}
		}
		upstreams[svc] = u.Instances
	}
	return upstreams, nil
}

// openGatewayDB opens (and migrates) the gateway's database: dsn, or the
// one of `ordermesh run` in data.
func openGatewayDB(ctx context.Context, dsn, data string) (*sqldb.DB, error) {
	if dsn == "" {
		dsn, _ = Config{DataDir: data}.DSN(edgeService())
	}
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("gateway database: %w", err)
	}
	if err := db.Migrate(ctx, migrationsOf(edgeService())...); err != nil {
		db.Close()
		return nil, fmt.Errorf("gateway database: %w", err)
	}
	return db, nil
}

// listAPIKeys prints every key, a line each, or as JSON.
func listAPIKeys(ctx context.Context, db *sqldb.DB, stdout io.Writer, asJSON bool) error {
	keys, err := gateway.ListAPIKeys(ctx, db)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(keys)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSUBJECT\tSCOPES\tCREATED\tREVOKED")
	for _, k := range keys {
		revoked := "-"
		if k.RevokedAt != nil {
			revoked = k.RevokedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Subject, strings.Join(k.Scopes, " "), k.CreatedAt.Format(time.RFC3339), revoked)
	}
	return tw.Flush()
}
