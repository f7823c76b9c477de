package httpx

import "net/http"

// Route is one API route, declared once by the context that serves it: its
// pattern, its policy at the gateway, and its handler. The service mounts
// the handlers (Mount); the gateway classifies requests by the same
// patterns, so a route added to a context is routed, authorized and
// rate-limited without another list to edit.
type Route struct {
	// Pattern is a ServeMux pattern with its method, e.g.
	// "GET /api/orders/{id}".
	Pattern string
	// Class names the route for rate limits, concurrency limits and
	// timeouts: catalog, catalog:write, orders:read, orders:write, admin,
	// provider.
	Class string
	// Scope is required of the caller; "" means public.
	Scope string
	// Cache marks public GETs the gateway's micro-cache may answer.
	Cache bool
	// Stream marks long-lived answers (SSE) that no route timeout applies
	// to; StreamIf names a query parameter that makes a GET one (a long
	// poll).
	Stream   bool
	StreamIf string
	// Handler serves it. It may be a method value of a nil service: a
	// route table read for its policies never calls it.
	Handler http.HandlerFunc
}

// Mount puts routes' handlers on mux.
func Mount(mux *http.ServeMux, routes []Route) {
	for _, r := range routes {
		mux.HandleFunc(r.Pattern, r.Handler)
	}
}

// With is r (a policy) for pattern, served by h.
func (r Route) With(pattern string, h http.HandlerFunc) Route {
	r.Pattern, r.Handler = pattern, h
	return r
}
