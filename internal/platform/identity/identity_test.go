package identity

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	s, err := NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	id := Identity{Subject: "cust-1", Scopes: []string{"orders:read"}, Via: "jwt"}
	got, err := s.Verify(s.Sign(id))
	if err != nil || got.Subject != "cust-1" || !got.Has("orders:read") || got.Has("orders:write") {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	other, _ := NewSigner([]byte(strings.Repeat("x", 32)))
	v := s.Sign(id)
	for name, bad := range map[string]string{
		"OtherSecret": other.Sign(Identity{Subject: "cust-1", Scopes: []string{Admin}}),
		"Tampered":    strings.Replace(v, v[3:10], "AAAAAAA", 1),
		"Empty":       "",
		"NoVersion":   v[3:],
	} {
		if _, err := s.Verify(bad); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
	s.now = func() time.Time { return time.Now().Add(-MaxAge - time.Minute) }
	old := s.Sign(id)
	s.now = time.Now
	if _, err := s.Verify(old); err == nil {
		t.Error("a stale signature verified")
	}
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Error("a short secret was accepted")
	}
}

func TestRequire(t *testing.T) {
	s, _ := NewSigner([]byte(strings.Repeat("k", 32)))
	h := Require(s, func(p string) bool { return p == "/api/open" }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("sub=" + From(r.Context()).Subject))
	}))
	for _, tt := range []struct {
		name, path, header string
		want               int
		body               string
	}{
		{"Signed", "/api/orders", s.Sign(Identity{Subject: "a"}), 200, "sub=a"},
		{"Unsigned", "/api/orders", "", 403, ""},
		{"Forged", "/api/orders", "v1.eyJzdWIiOiJhIn0.AAAA", 403, ""},
		{"Exempt", "/api/open", "", 200, "sub="},
		{"Health", "/readyz", "", 200, "sub="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tt.path, nil)
			if tt.header != "" {
				req.Header.Set(Header, tt.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want || (tt.body != "" && rec.Body.String() != tt.body) {
				t.Fatalf("= %d %s", rec.Code, rec.Body)
			}
		})
	}
}

// TestSignReusesAHeaderForAWhile: one identity's header is signed once per
// ReuseFor, never handed to another identity, and signed afresh after.
func TestSignReusesAHeaderForAWhile(t *testing.T) {
	s, _ := NewSigner([]byte(strings.Repeat("k", 32)))
	now := time.Now()
	s.now = func() time.Time { return now }
	ada := Identity{Subject: "ada", Scopes: []string{OrdersRead}, Via: "jwt"}
	first := s.Sign(ada)
	if again := s.Sign(ada); again != first {
		t.Error("the same identity was signed afresh within ReuseFor")
	}
	for _, other := range []Identity{
		{Subject: "ada", Scopes: []string{OrdersRead, OrdersWrite}, Via: "jwt"},
		{Subject: "ada", Scopes: []string{OrdersRead}, Via: "apikey"},
		{Subject: "ad", Scopes: []string{"a" + OrdersRead}, Via: "jwt"},
	} {
		v := s.Sign(other)
		got, err := s.Verify(v)
		if v == first || err != nil || got.Subject != other.Subject || strings.Join(got.Scopes, " ") != strings.Join(other.Scopes, " ") {
			t.Errorf("%+v got %+v (err %v), the header of another identity", other, got, err)
		}
	}
	now = now.Add(ReuseFor)
	if later := s.Sign(ada); later == first {
		t.Error("a header was reused past ReuseFor")
	}
}
