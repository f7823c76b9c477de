package app

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ordermesh/ordermesh/internal/gateway"
)

// TestTokenMintsHS256ForAGatewayWithASecret: a gateway started with
// --jwt-secret (as deploy/ runs it) accepts the token `ordermesh token
// --jwt-secret-file` mints, with its subject and scopes; a secret too
// short for the gateway is refused with the reason.
func TestTokenMintsHS256ForAGatewayWithASecret(t *testing.T) {
	secret := "change-me-jwt-0123456789abcdef0123456789"
	file := filepath.Join(t.TempDir(), "jwt-secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli(t, "token", "--sub", "ada", "--scopes", "orders:read,orders:write", "--jwt-secret-file", file)
	if code != 0 {
		t.Fatalf("token: exit %d: %s", code, errOut)
	}
	auth, err := gateway.NewAuthenticator(context.Background(), gateway.AuthConfig{HS256Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/api/orders", nil)
	r.Header.Set("Authorization", "Bearer "+strings.TrimSpace(out))
	id, err := auth.Authenticate(r)
	if err != nil {
		t.Fatalf("the gateway refuses the minted token: %v", err)
	}
	if id.Subject != "ada" || !id.Has("orders:write") {
		t.Fatalf("identity %+v; want subject ada with orders:write", id)
	}

	short := filepath.Join(t.TempDir(), "short")
	os.WriteFile(short, []byte("too-short"), 0o600)
	if code, _, errOut := cli(t, "token", "--sub", "ada", "--scopes", "orders:read", "--jwt-secret-file", short); code == 0 || !strings.Contains(errOut, "at least 32") {
		t.Fatalf("a 9-byte secret: exit %d, %q; want a refusal naming the 32 bytes", code, errOut)
	}
}

// TestHealthcheckSaysWhetherAProcessIsReady: `ordermesh healthcheck`
// exits 0 when /readyz answers 200, and 1 with the answer when it does not
// or nothing listens.
func TestHealthcheckSaysWhetherAProcessIsReady(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready {
			http.Error(w, "outbox: oldest unsent row 45s old", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	if code, out, errOut := cli(t, "healthcheck", "--url", srv.URL+"/readyz"); code != 0 || !strings.Contains(out, "ready") {
		t.Fatalf("ready process: exit %d, %q %q", code, out, errOut)
	}
	ready = false
	if code, _, errOut := cli(t, "healthcheck", "--url", srv.URL+"/readyz"); code != 1 || !strings.Contains(errOut, "503") || !strings.Contains(errOut, "outbox") {
		t.Fatalf("unready process: exit %d, %q; want 1 with the answer", code, errOut)
	}
	srv.Close()
	if code, _, errOut := cli(t, "healthcheck", "--url", srv.URL+"/readyz"); code != 1 || !strings.Contains(errOut, "not ready") {
		t.Fatalf("nothing listening: exit %d, %q", code, errOut)
	}
	if code, _, _ := cli(t, "healthcheck", "--url", "127.0.0.1:8080"); code != 2 {
		t.Fatalf("a URL without a scheme: exit %d; want 2 (usage)", code)
	}
}

// TestHelpFitsAndNamesWhatApplies: help fits 100 columns, shows no empty
// map defaults, and `serve SERVICE --help` lists that service's flags
// only; a flag mistake gets one line that says what to fix, not the whole
// usage.
func TestHelpFitsAndNamesWhatApplies(t *testing.T) {
	for _, args := range [][]string{{"run", "--help"}, {"serve", "--help"}, {"serve", "orders", "--help"}, {"load", "--help"}, {"dlq", "--help"}} {
		code, out, errOut := cli(t, args...)
		help := out + errOut
		if code != 0 || !strings.Contains(help, "Flags") {
			t.Fatalf("%v: exit %d:\n%s", args, code, help)
		}
		for _, line := range strings.Split(help, "\n") {
			if len(line) > 100 {
				t.Errorf("%v: a line of %d columns: %q", args, len(line), line)
			}
		}
		if strings.Contains(help, "map[]") {
			t.Errorf("%v shows an empty map default", args)
		}
	}
	_, out, errOut := cli(t, "serve", "orders", "--help")
	help := out + errOut
	for _, want := range []string{"--order-deadline", "--nats", "--db"} {
		if !strings.Contains(help, want+" ") && !strings.Contains(help, want+"\n") {
			t.Errorf("serve orders --help lacks %s", want)
		}
	}
	for _, not := range []string{"--jwt-key", "--upstream", "--psp-url", "--webhook-schedule"} {
		if strings.Contains(help, not+" ") {
			t.Errorf("serve orders --help lists %s, which serve orders refuses", not)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--order-deadline", "30"}, "write it like 30s"},
		{[]string{"serve", "orders", "--bogus"}, "unknown flag --bogus"},
		{[]string{"run", "--max-deliver", "many"}, "not a whole number"},
		{[]string{"serve", "--addr"}, "--addr needs a value"},
	} {
		code, _, errOut := cli(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "Flags (") {
			t.Errorf("%v: exit %d, %q; want 2 and %q, without the usage", tc.args, code, errOut, tc.want)
		}
	}
}

// TestABusyPortLeavesNothingBehind: `run` on a port in use says which flag
// picks another and creates no data directory; an invalid address gets
// no "in use" hint; `migrate --service` names a wrong service as such.
func TestABusyPortLeavesNothingBehind(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := filepath.Join(t.TempDir(), "fresh")
	for _, flag := range []string{"addr", "metrics-addr", "nats-listen"} {
		code, _, errOut := cli(t, "run", "--data", data, "--"+flag, busy.Addr().String())
		if code != 2 || !strings.Contains(errOut, "in use") || !strings.Contains(errOut, "--"+flag) {
			t.Errorf("run --%s on a busy port: exit %d, %q", flag, code, errOut)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Fatalf("run --%s on a busy port left %s behind (%v)", flag, data, err)
		}
	}
	if code, _, errOut := cli(t, "run", "--data", data, "--addr", "127.0.0.1:99999"); code != 2 || strings.Contains(errOut, "in use") || !strings.Contains(errOut, "invalid port") {
		t.Errorf("run --addr 127.0.0.1:99999: exit %d, %q; want the invalid port, no busy-port hint", code, errOut)
	}
	if code, _, errOut := cli(t, "migrate", "--service", "bogus"); code != 2 || !strings.Contains(errOut, `--service "bogus": no such service`) {
		t.Errorf("migrate --service bogus: exit %d, %q", code, errOut)
	}
}
