package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestUpstreamConfigFile(t *testing.T) {
	write := func(t *testing.T, body string) string {
		path := filepath.Join(t.TempDir(), "upstreams.json")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	t.Run("Loads", func(t *testing.T) {
		path := write(t, `{"upstreams": {
			"orders": {"instances": ["http://127.0.0.1:9101", "http://127.0.0.1:9102;w=3"], "lb": "weighted"},
			"inventory": {"instances": ["http://127.0.0.1:9111"], "lb": "hash", "hash_key": "header:X-Cart"},
			"payments": {"instances": ["http://127.0.0.1:9121"], "lb": "p2c"}}}`)
		lb, keys := balanceFlag(), hashKeyFlag()
		lb.Set("payments=least_conn") // the flag wins over the file
		ups, err := loadUpstreamFile(path, upstreamFlag{"shipping": {"http://127.0.0.1:9131"}}, lb, keys)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ups["orders"], []string{"http://127.0.0.1:9101", "http://127.0.0.1:9102;w=3"}) || len(ups["shipping"]) != 1 || len(ups) != 4 {
			t.Fatalf("upstreams = %v", ups)
		}
		if lb.m["orders"] != "weighted" || lb.m["inventory"] != "hash" || lb.m["payments"] != "least_conn" || keys.m["inventory"] != "header:X-Cart" {
			t.Fatalf("lb = %v, hash keys = %v", lb.m, keys.m)
		}
	})
	for name, tt := range map[string]struct{ body, want string }{
		"NotJSON":        {`orders: http://x`, "invalid character"},
		"UnknownField":   {`{"upstreams": {"orders": {"instances": ["http://127.0.0.1:1"], "weight": 2}}}`, `unknown field "weight"`},
		"Empty":          {`{"upstreams": {}}`, "no services"},
		"UnknownService": {`{"upstreams": {"billing": {"instances": ["http://127.0.0.1:1"]}}}`, "upstreams.billing: unknown service"},
		"NoInstances":    {`{"upstreams": {"orders": {"lb": "p2c"}}}`, "upstreams.orders.instances"},
		"BadInstance":    {`{"upstreams": {"orders": {"instances": ["127.0.0.1:9101"]}}}`, "upstreams.orders.instances"},
		"BadWeight":      {`{"upstreams": {"orders": {"instances": ["http://127.0.0.1:1;w=0"]}}}`, "weight must be 1-1000"},
		"BadPolicy":      {`{"upstreams": {"orders": {"instances": ["http://127.0.0.1:1"], "lb": "random"}}}`, "upstreams.orders.lb"},
		"BadHashKey":     {`{"upstreams": {"orders": {"instances": ["http://127.0.0.1:1"], "hash_key": "cookie"}}}`, "upstreams.orders.hash_key"},
		"AlsoByFlag":     {`{"upstreams": {"shipping": {"instances": ["http://127.0.0.1:1"]}}}`, "also given by --upstream"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadUpstreamFile(write(t, tt.body), upstreamFlag{"shipping": {"http://127.0.0.1:9131"}}, balanceFlag(), hashKeyFlag())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "--upstream-config") {
				t.Fatalf("error = %v, want one naming --upstream-config and %q", err, tt.want)
			}
		})
	}
	t.Run("CLI", func(t *testing.T) {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), []string{"serve", "gateway", "--nats", "nats://127.0.0.1:1", "--upstream-config", filepath.Join(t.TempDir(), "missing.json")}, &out, &errOut)
		if stderr := errOut.String(); code != 2 || !strings.Contains(stderr, "--upstream-config") || !strings.Contains(stderr, "no such file") {
			t.Fatalf("exit %d, stderr %q; want exit 2 naming the missing file", code, stderr)
		}
		errOut.Reset()
		code = Main(context.Background(), []string{"serve", "orders", "--nats", "nats://127.0.0.1:1", "--db", "sqlite:x.db", "--upstream-config", write(t, `{}`)}, &out, &errOut)
		if stderr := errOut.String(); code != 2 || !strings.Contains(stderr, "serve gateway") {
			t.Fatalf("exit %d, stderr %q; want exit 2 saying the file is for the gateway", code, stderr)
		}
	})
}
