package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/gateway/gatewaytest"
	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/notification"
	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/payment"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
	"github.com/ordermesh/ordermesh/internal/psp"
)

// echo answers with the identity the edge established.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	id := identity.From(r.Context())
	fmt.Fprintf(w, "sub=%s header=%t", id.Subject, r.Header.Get(identity.Header) != "")
})

// apiRoutes is the route table of the services' real APIs.
var apiRoutes = NewRoutes(map[string][]httpx.Route{
	"orders":        (*order.Service)(nil).API(),
	"inventory":     (*inventory.Service)(nil).API(),
	"payments":      (*payment.Service)(nil).API(),
	"notifications": append((*notification.Service)(nil).API(), (*webhook.Service)(nil).API()...),
	"psp":           (*psp.Server)(nil).API(),
})

func newTestEdge(t *testing.T, keys *gatewaytest.Keys, cfg EdgeConfig) *httptest.Server {
	t.Helper()
	a, err := NewAuthenticator(context.Background(), AuthConfig{KeyFiles: []string{keys.WritePEM(t, t.TempDir())}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth = a
	cfg.Routes = apiRoutes
	if cfg.Backend == nil {
		cfg.Backend = func(Route) http.Handler { return echo }
	}
	srv := httptest.NewServer(NewEdge(cfg))
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, method, url, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestEdgeScopes(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	srv := newTestEdge(t, keys, EdgeConfig{})
	reader := keys.Sign(t, "EdDSA", gatewaytest.Claims{Subject: "ada", Scope: "orders:read"})
	writer := keys.Sign(t, "ES256", gatewaytest.Claims{Subject: "ada", Scope: "orders:read orders:write"})
	admin := keys.Admin(t, "root")
	for _, tt := range []struct {
		name, method, path, token string
		want                      int
		authenticate              string // substring of WWW-Authenticate
	}{
		{"CatalogIsPublic", "GET", "/api/products", "", 200, ""},
		{"ProductWriteNeedsAdmin", "POST", "/api/products", writer, 403, `error="insufficient_scope", scope="admin"`},
		{"ProductWriteAdmin", "POST", "/api/products", admin, 200, ""},
		{"PlaceAnonymous", "POST", "/api/orders", "", 401, `scope="orders:write"`},
		{"PlaceReader", "POST", "/api/orders", reader, 403, "insufficient_scope"},
		{"PlaceWriter", "POST", "/api/orders", writer, 200, ""},
		{"CancelReader", "POST", "/api/orders/x/cancel", reader, 403, ""},
		{"ReadReader", "GET", "/api/orders/x", reader, 200, ""},
		{"AdminRoutes", "GET", "/api/admin/psp/ledger", writer, 403, ""},
		{"AdminAdmin", "GET", "/api/admin/psp/ledger", admin, 200, ""},
		{"WebhooksNeedAdmin", "GET", "/api/webhooks/endpoints", writer, 403, ""},
		{"BadToken", "GET", "/api/orders/x", "e30.e30.e30", 401, `error="invalid_token"`},
		{"BadTokenOnPublicRoute", "GET", "/api/products", "e30.e30.e30", 401, `error="invalid_token"`},
		{"ProviderWebhooksSignThemselves", "POST", "/api/psp/webhooks", "", 200, ""},
		{"UnknownRoute", "GET", "/api/nothing", admin, 404, ""},
		{"WrongMethod", "DELETE", "/api/orders/x", admin, 405, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := call(t, tt.method, srv.URL+tt.path, tt.token)
			if resp.StatusCode != tt.want {
				t.Fatalf("= %d %s, want %d", resp.StatusCode, body, tt.want)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, tt.authenticate) {
				t.Fatalf("WWW-Authenticate = %q, want it to contain %q", got, tt.authenticate)
			}
			if resp.StatusCode == 405 && resp.Header.Get("Allow") != "GET" {
				t.Fatalf("Allow = %q, want GET", resp.Header.Get("Allow"))
			}
			if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("error Content-Type = %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestEdgeSignsIdentityAndDropsForgedOne(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	signer, _ := identity.NewSigner([]byte(strings.Repeat("s", 32)))
	var got atomic.Value
	srv := newTestEdge(t, keys, EdgeConfig{Signer: signer, Backend: func(Route) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Store(r.Header.Get(identity.Header)) })
	}})
	req, _ := http.NewRequest("GET", srv.URL+"/api/orders/x", nil)
	req.Header.Set("Authorization", "Bearer "+keys.Sign(t, "EdDSA", gatewaytest.Claims{Subject: "ada", Scope: "orders:read"}))
	req.Header.Set(identity.Header, signer.Sign(identity.Identity{Subject: "mallory", Scopes: []string{"admin"}}))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id, err := signer.Verify(got.Load().(string))
	if err != nil || id.Subject != "ada" || id.Has("admin") {
		t.Fatalf("forwarded identity = %+v, %v; want ada's, not the client's header", id, err)
	}
}

func TestEdgeRateLimitLocal(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	lim, _ := ParseLimit("60/h,burst=5")
	srv := newTestEdge(t, keys, EdgeConfig{Limits: map[string]Limit{"orders:read": lim}, Limiter: NewLocalLimiter()})
	ada := keys.Sign(t, "EdDSA", gatewaytest.Claims{Subject: "ada", Scope: "orders:read"})
	bob := keys.Sign(t, "EdDSA", gatewaytest.Claims{Subject: "bob", Scope: "orders:read"})
	for i := range 5 {
		resp, body := call(t, "GET", srv.URL+"/api/orders/x", ada)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d = %d %s", i+1, resp.StatusCode, body)
		}
		if p := resp.Header.Get("RateLimit-Policy"); p != `"orders:read";q=60;w=3600, "orders:read;burst";q=5;w=300` {
			t.Fatalf("RateLimit-Policy = %q", p)
		}
		if want := fmt.Sprintf(`"orders:read";r=%d;`, 4-i); !strings.HasPrefix(resp.Header.Get("RateLimit"), want) {
			t.Fatalf("RateLimit = %q, want prefix %q", resp.Header.Get("RateLimit"), want)
		}
	}
	resp, body := call(t, "GET", srv.URL+"/api/orders/x", ada)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "rate limit") {
		t.Fatalf("sixth = %d %s (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if resp, _ := call(t, "GET", srv.URL+"/api/orders/x", bob); resp.StatusCode != 200 {
		t.Fatalf("another caller = %d; limits are per caller", resp.StatusCode)
	}
	if resp, _ := call(t, "GET", srv.URL+"/api/products", ""); resp.StatusCode != 200 {
		t.Fatalf("another route class = %d; limits are per route", resp.StatusCode)
	}
}

func TestGCRA(t *testing.T) {
	l := NewLocalLimiter()
	now := time.Unix(1_700_000_000, 0)
	l.now = func() time.Time { return now }
	lim := Limit{Rate: 10, Period: time.Second, Burst: 3}
	allowed := func() bool {
		d, _ := l.Allow(context.Background(), "k", lim)
		return d.Allowed
	}
	for i := range 3 {
		if !allowed() {
			t.Fatalf("burst request %d refused", i+1)
		}
	}
	if allowed() {
		t.Fatal("fourth request in the same instant allowed")
	}
	now = now.Add(100 * time.Millisecond) // one emission interval
	if !allowed() || allowed() {
		t.Fatal("after one interval exactly one more must pass")
	}
	// Over a long run the rate holds: 10/s for 10s → 100 (+ the burst).
	n := 0
	for range 1000 {
		now = now.Add(10 * time.Millisecond)
		if allowed() {
			n++
		}
	}
	if n < 99 || n > 101 {
		t.Fatalf("allowed %d in 10s at 10/s", n)
	}
}

func TestParseLimit(t *testing.T) {
	for in, want := range map[string]Limit{
		"100/m":          {Rate: 100, Period: time.Minute, Burst: 100},
		"100/m,burst=20": {Rate: 100, Period: time.Minute, Burst: 20},
		"5/s":            {Rate: 5, Period: time.Second, Burst: 5},
		"50/10s":         {Rate: 50, Period: 10 * time.Second, Burst: 50},
	} {
		if got, err := ParseLimit(in); err != nil || got != want {
			t.Errorf("%s = %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "100", "0/m", "x/m", "10/week", "10/m,burst=0", "10/m,size=3"} {
		if _, err := ParseLimit(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestRedisLimitAcrossGateways: three gateways sharing one Redis admit the
// configured limit in total, within 1%.
func TestRedisLimitAcrossGateways(t *testing.T) {
	url := os.Getenv("ORDERMESH_TEST_REDIS")
	if url == "" {
		t.Skip("ORDERMESH_TEST_REDIS not set (CI sets it)")
	}
	keys := gatewaytest.NewKeys(t)
	// A burst of 300 and a trickle of 1 per hour: over the test exactly
	// 300 requests may pass, whichever gateway they reach.
	lim := Limit{Rate: 1, Period: time.Hour, Burst: 300}
	class := "orders:read"
	var gateways []*httptest.Server
	for range 3 {
		rl, rdb, err := NewRedisLimiter(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		gateways = append(gateways, newTestEdge(t, keys, EdgeConfig{Limits: map[string]Limit{class: lim}, Limiter: rl}))
	}
	sub := fmt.Sprintf("shared-%d", time.Now().UnixNano()) // a fresh key in Redis
	tok := keys.Sign(t, "EdDSA", gatewaytest.Claims{Subject: sub, Scope: "orders:read"})
	var ok, limited, other atomic.Int64
	var wg sync.WaitGroup
	for g := range 3 {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 100 {
					resp, _ := call(t, "GET", gateways[g].URL+"/api/orders/x", tok)
					switch resp.StatusCode {
					case 200:
						ok.Add(1)
					case 429:
						limited.Add(1)
					default:
						other.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("1200 requests over 3 gateways: %d admitted, %d limited, %d other", ok.Load(), limited.Load(), other.Load())
	if other.Load() != 0 {
		t.Fatalf("%d answers were neither 200 nor 429", other.Load())
	}
	if n := ok.Load(); n < 297 || n > 303 {
		t.Fatalf("admitted %d; the shared limit is 300 (±1%%)", n)
	}
}

func TestRedisDownFollowsPolicy(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	lim := Limit{Rate: 10, Period: time.Second, Burst: 10}
	for _, allow := range []bool{true, false} {
		t.Run(fmt.Sprint("allow=", allow), func(t *testing.T) {
			rl, rdb, err := NewRedisLimiter("redis://127.0.0.1:1/0") // nothing listens
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			srv := newTestEdge(t, keys, EdgeConfig{Limits: map[string]Limit{"catalog": lim}, Limiter: rl, AllowOnLimiterError: allow})
			resp, body := call(t, "GET", srv.URL+"/api/products", "")
			want := 200
			if !allow {
				want = 503
			}
			if resp.StatusCode != want {
				t.Fatalf("= %d %s, want %d", resp.StatusCode, body, want)
			}
		})
	}
}

func TestConcurrencyLimit(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	srv := newTestEdge(t, keys, EdgeConfig{Concurrency: map[string]int{"catalog": 2}, Backend: func(Route) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			<-release
		})
	}})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call(t, "GET", srv.URL+"/api/products/a", "")
		}()
	}
	<-entered
	<-entered
	resp, body := call(t, "GET", srv.URL+"/api/products/b", "")
	close(release)
	wg.Wait()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third concurrent = %d %s", resp.StatusCode, body)
	}
}

func TestRouteTimeout(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer up.Close()
	in, _ := NewInstance(up.URL)
	u, _ := NewUpstream("inventory", "", []*Instance{in})
	proxy := u.Handler()
	srv := newTestEdge(t, keys, EdgeConfig{Timeouts: map[string]time.Duration{"catalog": 100 * time.Millisecond},
		Backend: func(Route) http.Handler { return proxy }})
	resp, body := call(t, "GET", srv.URL+"/api/products", "")
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("= %d %s, want 504", resp.StatusCode, body)
	}
}

func TestBodyLimit(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	srv := newTestEdge(t, keys, EdgeConfig{})
	req, _ := http.NewRequest("POST", srv.URL+"/api/orders", strings.NewReader(strings.Repeat("x", 2<<20)))
	req.Header.Set("Authorization", "Bearer "+keys.Admin(t, "root"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 MiB body = %d, want 413", resp.StatusCode)
	}
}

// TestFailedAuthenticationIsLimitedAcrossAddresses: failed attempts, each
// from an address of its own, meet a limit per API-key prefix and one for
// all clients together; the 429 says which in its RateLimit fields.
func TestFailedAuthenticationIsLimitedAcrossAddresses(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	a, err := NewAuthenticator(context.Background(), AuthConfig{KeyFiles: []string{keys.WritePEM(t, t.TempDir())}})
	if err != nil {
		t.Fatal(err)
	}
	attempt := func(edge *Edge, i int, key string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/api/orders", nil)
		r.RemoteAddr = fmt.Sprintf("127.0.%d.%d:4000", i/250, i%250+1)
		r.Header.Set("Authorization", "Bearer "+key)
		w := httptest.NewRecorder()
		edge.ServeHTTP(w, r)
		return w
	}
	for name, tc := range map[string]struct {
		key        func(i int) string
		wantPolicy string
	}{
		"OneKeyPrefix": {func(i int) string { return fmt.Sprintf("om_SAMEPREFIX%06d", i) }, `"auth:failures";q=20;w=60`},
		"AllClients":   {func(i int) string { return fmt.Sprintf("om_%06dguess", i) }, `"auth:failures:all";q=60;w=60`},
	} {
		t.Run(name, func(t *testing.T) {
			edge := NewEdge(EdgeConfig{Auth: a, Routes: apiRoutes, Backend: func(Route) http.Handler { return echo }})
			for i := range 50 {
				w := attempt(edge, i, tc.key(i))
				if w.Code == http.StatusUnauthorized {
					continue
				}
				if w.Code != http.StatusTooManyRequests {
					t.Fatalf("attempt %d = %d, want 401 then 429", i, w.Code)
				}
				if p := w.Header().Get("RateLimit-Policy"); !strings.HasPrefix(p, tc.wantPolicy) || w.Header().Get("RateLimit") == "" || w.Header().Get("Retry-After") == "" {
					t.Fatalf("429 fields: RateLimit-Policy %q, RateLimit %q, Retry-After %q; want policy %s", p, w.Header().Get("RateLimit"), w.Header().Get("Retry-After"), tc.wantPolicy)
				}
				return
			}
			t.Fatal("50 failed attempts from 50 addresses met no limit")
		})
	}
}

// TestRefusedTokensSayWhatToFix: a 401 names what the client must fix,
// in its terms, and never the JWT library's own message.
func TestRefusedTokensSayWhatToFix(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	other := gatewaytest.NewKeys(t)
	srv := newTestEdge(t, keys, EdgeConfig{})
	hour := time.Hour
	for name, tc := range map[string]struct{ token, want string }{
		"Garbage":       {"not-a-token", "not a JWT"},
		"Expired":       {keys.Sign(t, "EdDSA", gatewaytest.Claims{Subject: "ada", Scope: "orders:read", IssuedAt: time.Now().Add(-2 * hour), Expires: time.Now().Add(-hour)}), "expired"},
		"OtherKey":      {other.Sign(t, "EdDSA", gatewaytest.Claims{Subject: "ada", Scope: "orders:read"}), "signature"},
		"OtherAudience": {keys.Sign(t, "EdDSA", gatewaytest.Claims{Subject: "ada", Scope: "orders:read", Audience: "elsewhere"}), "aud"},
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := call(t, "GET", srv.URL+"/api/orders/x", tc.token)
			var p struct{ Detail, Field string }
			json.Unmarshal([]byte(body), &p)
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(p.Detail, tc.want) || p.Field != "Authorization" {
				t.Fatalf("= %d %s; want 401 naming Authorization and saying %q", resp.StatusCode, body, tc.want)
			}
			for _, internal := range []string{"token has invalid claims", "segments", "crypto/", "verification error"} {
				if strings.Contains(body, internal) {
					t.Errorf("the answer repeats the library's %q: %s", internal, body)
				}
			}
		})
	}
}
