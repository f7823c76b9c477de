package app

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/gateway/gatewaytest"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
	"github.com/ordermesh/ordermesh/internal/psp"
)

// testAuth is the package's token issuer: keys made once, their public
// halves in a PEM file every test node trusts (--jwt-key), and an admin
// token that http.DefaultClient attaches to requests that carry no
// Authorization of their own. Tokens are minted with jwx, not with the
// gateway's code.
var testAuth struct {
	once  sync.Once
	keys  *gatewaytest.Keys
	pem   string
	admin string
}

func authSetup(t testing.TB) {
	t.Helper()
	testAuth.once.Do(func() {
		testAuth.keys = gatewaytest.NewKeys(t)
		dir, err := os.MkdirTemp("", "ordermesh-test-keys")
		if err != nil {
			t.Fatal(err)
		}
		testAuth.pem = testAuth.keys.WritePEM(t, dir)
		testAuth.admin = testAuth.keys.Sign(t, "EdDSA", gatewaytest.Claims{Subject: "test-admin", Scope: "admin", Expires: time.Now().Add(24 * time.Hour)})
		http.DefaultClient.Transport = authTransport{base: http.DefaultTransport, token: testAuth.admin}
	})
}

// withTestAuth makes a node trust the test keys.
func withTestAuth(t testing.TB, cfg Config) Config {
	authSetup(t)
	if len(cfg.Auth.KeyFiles) == 0 {
		cfg.Auth.KeyFiles = []string{testAuth.pem}
	}
	return cfg
}

// customerToken is a token for sub with scopes.
func customerToken(t testing.TB, sub, scopes string) string {
	authSetup(t)
	return testAuth.keys.Sign(t, "ES256", gatewaytest.Claims{Subject: sub, Scope: scopes})
}

type authTransport struct {
	base  http.RoundTripper
	token string
}

func (a authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+a.token)
	}
	return a.base.RoundTrip(r)
}

// as sends a request with token ("" for none at all).
func (s *stack) as(token, method, path string, body any, out any) *http.Response {
	s.t.Helper()
	hdr := map[string]string{"Authorization": "Bearer " + token}
	if token == "" {
		hdr["Authorization"] = "-" // not a bearer: the transport leaves it, the gateway refuses it
	}
	if method == "POST" && strings.HasSuffix(path, "/orders") {
		hdr["Idempotency-Key"] = newKey()
	}
	return s.do(method, path, hdr, body, out)
}

// TestOrdersAreTheCallers: orders:read sees only the caller's own orders,
// orders:write places only as the caller, and admin sees everything.
func TestOrdersAreTheCallers(t *testing.T) {
	s := startStack(t, Config{})
	s.addProduct("OWN", 100)
	ada := customerToken(t, "ada", "orders:read orders:write")
	bob := customerToken(t, "bob", "orders:read orders:write")
	readOnly := customerToken(t, "ada", "orders:read")

	var mine order.Order
	body := orderBody("", psp.TokenOK, order.ItemRequest{SKU: "OWN", Quantity: 1})
	if resp := s.as(ada, "POST", "/api/orders", body, &mine); resp.StatusCode != 202 || mine.CustomerID != "ada" {
		t.Fatalf("place as ada without customer_id = %d %+v", resp.StatusCode, mine)
	}
	if resp := s.as(ada, "POST", "/api/orders", orderBody("bob", psp.TokenOK, order.ItemRequest{SKU: "OWN", Quantity: 1}), nil); resp.StatusCode != 403 {
		t.Fatalf("ada placing as bob = %d", resp.StatusCode)
	}
	if resp := s.as(readOnly, "POST", "/api/orders", body, nil); resp.StatusCode != 403 {
		t.Fatalf("orders:read placing = %d", resp.StatusCode)
	}
	if resp := s.as("", "POST", "/api/orders", body, nil); resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("anonymous placing = %d (WWW-Authenticate %q)", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp := s.as(ada, "GET", "/api/orders/"+mine.ID, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("ada reading her order = %d", resp.StatusCode)
	}
	for _, path := range []string{"/api/orders/" + mine.ID, "/api/orders/" + mine.ID + "/events", "/api/orders/" + mine.ID + "?wait=1s&after_version=0"} {
		if resp := s.as(bob, "GET", path, nil, nil); resp.StatusCode != 404 {
			t.Fatalf("bob reading ada's order at %s = %d, want 404", path, resp.StatusCode)
		}
	}
	if resp := s.as(bob, "POST", "/api/orders/"+mine.ID+"/cancel", nil, nil); resp.StatusCode != 404 {
		t.Fatalf("bob cancelling ada's order = %d, want 404", resp.StatusCode)
	}
	var list []order.Order
	s.as(bob, "GET", "/api/orders", nil, &list)
	if len(list) != 0 {
		t.Fatalf("bob's list shows %d orders of others", len(list))
	}
	if resp := s.as(bob, "GET", "/api/orders?customer_id=ada", nil, nil); resp.StatusCode != 403 {
		t.Fatalf("bob listing ada's orders = %d", resp.StatusCode)
	}
	s.as(ada, "GET", "/api/orders", nil, &list)
	if len(list) != 1 || list[0].ID != mine.ID {
		t.Fatalf("ada's list = %+v", list)
	}
	if resp := s.do("GET", "/api/orders/"+mine.ID, nil, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("admin reading ada's order = %d", resp.StatusCode)
	}
}

// TestRunMakesDevToken: run (embedded, no keys configured) makes a signing
// key, writes a dev admin token the API accepts, and `ordermesh token`
// mints customer tokens with the same key. The dev token is checked with
// jwx against the key file, independently of the gateway.
func TestRunMakesDevToken(t *testing.T) {
	dir := t.TempDir()
	n, err := Start(context.Background(), Config{Services: Services, Addr: "127.0.0.1:0", DataDir: dir, Logger: bustest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	raw, err := os.ReadFile(filepath.Join(dir, DevTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(raw))
	key, err := gateway.LoadSigningKey(filepath.Join(dir, gateway.DevKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse([]byte(tok), jwt.WithKey(jwa.EdDSA(), key.Public()), jwt.WithIssuer("ordermesh"), jwt.WithAudience("ordermesh"))
	if err != nil {
		t.Fatalf("jwx rejects the dev token: %v", err)
	}
	if sub, _ := parsed.Subject(); sub != "dev-admin" {
		t.Fatalf("dev token subject %q", sub)
	}
	s := &stack{t: t, n: n, base: n.URL()}
	if resp := s.as(tok, "GET", "/api/admin/psp/ledger", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("dev admin token on an admin route = %d", resp.StatusCode)
	}
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"token", "--data", dir, "--sub", "cleo", "--scopes", "orders:read"}, &out, &errOut); code != 0 {
		t.Fatalf("token exited %d: %s", code, errOut.String())
	}
	cleo := strings.TrimSpace(out.String())
	if resp := s.as(cleo, "GET", "/api/orders", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("minted token = %d", resp.StatusCode)
	}
	if resp := s.as(cleo, "GET", "/api/admin/psp/ledger", nil, nil); resp.StatusCode != 403 {
		t.Fatalf("orders:read token on an admin route = %d", resp.StatusCode)
	}
	if code := Main(context.Background(), []string{"token", "--data", dir, "--sub", "cleo", "--scopes", "orders:everything"}, io.Discard, &errOut); code != 2 {
		t.Fatalf("unknown scope exited %d", code)
	}
}

// TestAPIKeyCommand: a key made with `ordermesh apikey create` works as a
// bearer credential with its scopes, and not once revoked.
func TestAPIKeyCommand(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"apikey", "create", "--data", dir, "--sub", "merchant-7", "--scopes", "orders:read"}, &out, &errOut); code != 0 {
		t.Fatalf("apikey create exited %d: %s", code, errOut.String())
	}
	key := strings.TrimSpace(out.String())
	s := startStack(t, Config{DataDir: dir})
	if resp := s.as(key, "GET", "/api/orders", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("API key = %d", resp.StatusCode)
	}
	if resp := s.as(key, "POST", "/api/orders", orderBody("", psp.TokenOK), nil); resp.StatusCode != 403 {
		t.Fatalf("orders:read API key placing = %d", resp.StatusCode)
	}
	if resp := s.as("om_not-a-key", "GET", "/api/orders", nil, nil); resp.StatusCode != 401 {
		t.Fatalf("unknown API key = %d", resp.StatusCode)
	}
	out.Reset()
	if code := Main(context.Background(), []string{"apikey", "list", "--data", dir}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "merchant-7") || strings.Contains(out.String(), key) {
		t.Fatalf("apikey list exited %d:\n%s", code, out.String())
	}
}

// TestServicesRefuseRequestsThatBypassTheGateway: a service in its own
// process answers only requests carrying the gateway's signed identity.
func TestServicesRefuseRequestsThatBypassTheGateway(t *testing.T) {
	dir := t.TempDir()
	s := startStack(t, Config{DataDir: dir, NATSListen: "127.0.0.1:0"})
	secret := strings.Repeat("0123456789abcdef", 4)
	orders, err := Start(context.Background(), Config{
		Services: []string{"orders"}, Addr: "127.0.0.1:0", NATSURL: s.n.NATSURL(), InternalSecret: secret, Logger: bustest.Logger(t), Orders: s.n.cfg.Orders,
		DSNs: map[string]string{"orders": "sqlite:" + filepath.Join(dir, "orders.db")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer orders.Close(context.Background())
	direct := &stack{t: t, base: orders.URL()}
	if resp := direct.do("GET", "/api/orders", nil, nil, nil); resp.StatusCode != 403 {
		t.Fatalf("a bearer token straight to the service = %d, want 403", resp.StatusCode)
	}
	other, _ := identity.NewSigner([]byte(strings.Repeat("x", 32)))
	if resp := direct.do("GET", "/api/orders", map[string]string{identity.Header: other.Sign(identity.Identity{Subject: "x", Scopes: []string{"admin"}})}, nil, nil); resp.StatusCode != 403 {
		t.Fatalf("an identity signed with another secret = %d, want 403", resp.StatusCode)
	}
	if _, err := Start(context.Background(), Config{Services: []string{"orders"}, Addr: "127.0.0.1:0", NATSURL: s.n.NATSURL(), Logger: bustest.Logger(t),
		Orders: s.n.cfg.Orders, DSNs: map[string]string{"orders": "sqlite:" + filepath.Join(dir, "orders.db")}}); err == nil || !strings.Contains(err.Error(), "--internal-secret") {
		t.Fatalf("a service without --internal-secret started (%v)", err)
	}
	// Through a gateway holding the secret, the same service answers.
	gw, err := Start(context.Background(), withTestAuth(t, Config{
		Services: []string{"gateway"}, Addr: "127.0.0.1:0", NATSURL: s.n.NATSURL(), InternalSecret: secret, Logger: bustest.Logger(t),
		Upstreams: map[string][]string{"orders": {orders.URL()}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close(context.Background())
	var list []order.Order
	if resp := (&stack{t: t, base: gw.URL()}).do("GET", "/api/orders", nil, nil, &list); resp.StatusCode != 200 {
		t.Fatalf("through the gateway = %d", resp.StatusCode)
	}
}

// TestCatalogCacheInvalidatedByProductUpdate: a catalog read is served
// from the gateway's cache until product.updated empties it.
func TestCatalogCacheInvalidatedByProductUpdate(t *testing.T) {
	s := startStack(t, Config{CacheTTL: time.Hour})
	s.addProduct("CACHED", 5)
	first := s.do("GET", "/api/products/CACHED", nil, nil, nil)
	second := s.do("GET", "/api/products/CACHED", nil, nil, nil)
	if second.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("second read X-Cache = %q (first %q)", second.Header.Get("X-Cache"), first.Header.Get("X-Cache"))
	}
	if resp := s.do("POST", "/api/products/CACHED/restock", nil, map[string]int{"quantity": 7}, nil); resp.StatusCode >= 300 {
		t.Fatalf("restock = %d", resp.StatusCode)
	}
	var p struct {
		Available int `json:"available"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := s.do("GET", "/api/products/CACHED", nil, nil, &p)
		if p.Available == 12 {
			if resp.Header.Get("X-Cache") == "HIT" && resp.Header.Get("ETag") == first.Header.Get("ETag") {
				t.Fatal("a stale entry is served")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d available after the restock's product.updated (TTL 1h): the cache was not invalidated", p.Available)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
