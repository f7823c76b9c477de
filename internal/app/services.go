package app

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/component"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
)

// startServices builds each configured service on its store, mounts its
// routes on mux and starts its consumers and background loops (which end
// with runCtx).
func (n *Node) startServices(ctx, runCtx context.Context, mux *http.ServeMux) error {
	hooks := component.Hooks{
		Loops:        &n.loops,
		OnClose:      func(f func()) { n.onClose = append(n.onClose, f) },
		ServeOutside: n.serveOutside,
	}
	all := n.cfg.components(n)
	for _, name := range n.cfg.Services {
		i := slices.IndexFunc(all, func(c component.Component) bool { return c.Name == name })
		if i < 0 {
			return fmt.Errorf("unknown service %q", name)
		}
		b := n.busFor(name)
		hooks.Consume = func(ctx context.Context, cfg bus.ConsumerConfig, h bus.BatchHandler) (bus.Subscription, error) {
			return n.consumeBatch(ctx, b, cfg, h)
		}
		env := &component.Env{Ctx: ctx, Run: runCtx, Mux: mux, Bus: b, Log: n.log.With("service", name), Metrics: n.reg,
			URL: n.URL(), Hooks: hooks}
		if st := n.stores[name]; st != nil {
			env.DB, env.Outbox = st.db, st.outbox
		}
		if err := all[i].Start(env); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
	}
	return nil
}

// gatewayComponent is the gateway's own component: the edge itself is
// mounted by mountAPI; Start serves its own routes (the firehose, the
// admin API and the OpenAPI document). Its flags are c's Gateway; those
// naming its upstreams are serve's alone (run has none).
func (c *Config) gatewayComponent(n *Node) component.Component {
	return component.Component{Name: "gateway", Migrations: gateway.Migrations, OptionalDB: true, API: n.gatewayAPI, Edge: true, Replays: true,
		Settings: &c.Gateway, Shared: upstreamFlagNames,
		Start: func(env *component.Env) error {
			httpx.Mount(env.Mux, n.gatewayAPI())
			env.Metrics.MustRegister(gateway.RateLimited)
			return nil
		}}
}

// gatewayAPI is the gateway's own API (the others it proxies or, in one
// process, hands to the services mounted beside it): the firehose, the
// OpenAPI document, and the admin API over the broker that the console
// uses (dead letters, one order's events across every service, health).
// n may be nil to read the policies.
func (n *Node) gatewayAPI() []httpx.Route {
	admin := httpx.Route{Class: "admin", Scope: identity.Admin}
	firehose := admin
	firehose.Stream = true
	return []httpx.Route{
		firehose.With("GET /api/admin/stream", n.onBroker(n.firehose)),
		httpx.Route{Class: "catalog", Cache: true}.With("GET /api/openapi.json", n.serveOpenAPI),
		admin.With("GET /api/admin/dlq", n.onBroker(n.listDeadLetters)),
		admin.With("GET /api/admin/dlq/{id}", n.onBroker(n.showDeadLetter)),
		admin.With("POST /api/admin/dlq/{id}/replay", n.onBroker(n.replayDeadLetter)),
		admin.With("POST /api/admin/dlq/replay", n.onBroker(n.replayDeadLetters)),
		admin.With("DELETE /api/admin/dlq", n.onBroker(n.purgeDeadLetters)),
		admin.With("GET /api/admin/orders/{id}/saga", n.onBroker(n.saga)),
		admin.With("GET /api/admin/health", n.health),
	}
}

// onBroker is h, which reads the broker, or on a gateway started without
// one an answer that says so.
func (n *Node) onBroker(h http.HandlerFunc) http.HandlerFunc {
	if n == nil || n.broker != nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		httpx.Error(w, r, n.log, apperr.New(apperr.Unavailable, "", "this gateway runs without a broker: start it with --nats (or --broker) to see dead letters, an order's events and the live stream"))
	}
}

// serveOpenAPI answers the API's OpenAPI document.
func (n *Node) serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
}
