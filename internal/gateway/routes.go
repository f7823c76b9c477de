package gateway

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
	"go.opentelemetry.io/otel/trace"
)

// Routes is the gateway's route table, built from the routes the services
// declare (httpx.Route): a request is classified by the same ServeMux
// pattern that the service answering it is mounted on.
type Routes struct {
	mux    *http.ServeMux
	routes map[string]declared // by pattern
}

type declared struct {
	httpx.Route
	service string
}

// NewRoutes builds the table from each service's routes. Two services
// declaring one pattern is a bug, and panics (as ServeMux does).
func NewRoutes(byService map[string][]httpx.Route) *Routes {
	t := &Routes{mux: http.NewServeMux(), routes: map[string]declared{}}
	for service, routes := range byService {
		for _, r := range routes {
			t.mux.HandleFunc(r.Pattern, func(http.ResponseWriter, *http.Request) {})
			t.routes[r.Pattern] = declared{r, service}
		}
	}
	return t
}

// Classify maps a request under /api/ to its route; ok is false when no
// service declares a pattern matching its method and path.
func (t *Routes) Classify(r *http.Request) (Route, bool) {
	_, pattern := t.mux.Handler(r)
	d, ok := t.routes[pattern]
	if !ok {
		return Route{}, false
	}
	stream := d.Stream || (d.StreamIf != "" && r.URL.Query().Has(d.StreamIf))
	return Route{Class: d.Class, Scope: d.Scope, Service: d.service, Cache: d.Cache, Stream: stream, Pattern: d.Pattern}, true
}

type routeKey struct{}

// WithRoute carries r's route, as Classify found it, in its context: a
// server that names the route once for its span and access log hands it
// to the Edge, which then does not classify the request again.
func WithRoute(r *http.Request, route Route) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), routeKey{}, route))
}

// RouteOf is the route WithRoute put in r's context, if any.
func RouteOf(r *http.Request) (Route, bool) {
	route, ok := r.Context().Value(routeKey{}).(Route)
	return route, ok
}

// Allowed returns the methods some route declares for r's path, when r's
// own method has none: the gateway then answers 405 with them.
func (t *Routes) Allowed(r *http.Request) []string {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := *r // the mux reads only the method, host and path: no deep copy
		probe.Method = m
		if _, pattern := t.mux.Handler(&probe); pattern != "" && !slices.Contains(allowed, m) {
			allowed = append(allowed, m)
		}
	}
	return allowed
}

// Patterns lists every declared pattern, for checks against the API's
// documentation.
func (t *Routes) Patterns() []string {
	out := make([]string, 0, len(t.routes))
	for p := range t.routes {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// nameOrder puts the order id a request names on its span.
func nameOrder(route Route, r *http.Request) {
	if id := orderOf(route, r); id != "" {
		trace.SpanFromContext(r.Context()).SetAttributes(telemetry.AttrOrderID.String(id))
	}
}

// orderOf is the order id a request under /api/orders/{id} names ("" for
// another route), for its span.
func orderOf(route Route, r *http.Request) string {
	_, path, _ := strings.Cut(route.Pattern, " ")
	rest, ok := strings.CutPrefix(path, "/api/orders/{id}")
	if !ok || (rest != "" && rest[0] != '/') {
		return ""
	}
	id, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/api/orders/"), "/")
	return id
}
