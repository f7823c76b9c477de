package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIMatchesTheRoutes: GET /api/openapi.json answers an OpenAPI
// 3.1 document without credentials; every operation it documents is a
// route the running node has registered, and every route the components
// declare (the gateway's table) is documented.
func TestOpenAPIMatchesTheRoutes(t *testing.T) {
	s := startStack(t, Config{})
	resp, err := http.Get(s.base + "/api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != http.StatusOK || doc.OpenAPI != "3.1.0" {
		t.Fatalf("GET /api/openapi.json = %d, openapi %q, %v", resp.StatusCode, doc.OpenAPI, err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			route := strings.ToUpper(method) + " " + path
			documented[route] = true
			// The node's mux must route a request of that shape to exactly this pattern.
			req := httptest.NewRequest(strings.ToUpper(method), regexp.MustCompile(`\{[a-z_]+\}`).ReplaceAllString(path, "1"), nil)
			if _, pattern := s.n.api.Handler(req); pattern != route {
				t.Errorf("documented %s, but the node routes it to %q", route, pattern)
			}
		}
	}
	// Every route the components declare: the gateway's table.
	registered := routes.Patterns()
	if len(registered) < 20 {
		t.Fatalf("found only %d registered routes in the source", len(registered))
	}
	for _, r := range registered {
		if !documented[r] {
			t.Errorf("route %s is registered but not in openapi.json", r)
		}
	}
	for r := range documented {
		if !slices.Contains(registered, r) {
			t.Errorf("openapi.json documents %s, which no component declares", r)
		}
	}
}
