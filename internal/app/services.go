package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/notification"
	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/payment"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
	"github.com/ordermesh/ordermesh/internal/psp"
	"github.com/ordermesh/ordermesh/internal/shipping"
)

// startServices builds each configured service on its store, mounts its
// routes on mux and starts its consumers and background loops (which end
// with runCtx).
func (n *Node) startServices(ctx, runCtx context.Context, mux *http.ServeMux) error {
	for _, name := range n.cfg.Services {
		c, ok := componentNamed(name)
		if !ok {
			return fmt.Errorf("unknown service %q", name)
		}
		st := n.stores[name]
		if err := c.start(n, starting{ctx: ctx, runCtx: runCtx, mux: mux, st: st, log: n.log.With("service", name)}); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
	}
	return nil
}

// startOrders serves orders, drives their state machine and cancels
// those past their deadline.
func (n *Node) startOrders(s starting) error {
	ctx, runCtx, mux, st, log := s.ctx, s.runCtx, s.mux, s.st, s.log
	svc := order.New(order.Config{DB: st.db, Outbox: st.outbox, Logger: log, Deadline: n.cfg.OrderDeadline,
		Changed: func(id string) { n.Bus.Changed("order", id) },
		CatalogCaughtUp: func(ctx context.Context, sku string) (bool, error) {
			seq, err := n.Bus.LastSequence(ctx, event.ProductUpdated, sku)
			if err != nil || seq == 0 {
				return err == nil, err
			}
			return n.Bus.AckedThrough(ctx, order.ConsumerName, sku, seq)
		}})
	svc.Routes(mux)
	n.reg.MustRegister(order.Finished, order.Lifetime)
	// Long polls and event streams on any instance are woken by the
	// broker, whichever instance changed the order.
	stopWatch, err := n.Bus.OnChanged("order", svc.Notify)
	if err != nil {
		return err
	}
	n.onClose = append(n.onClose, stopWatch)
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		svc.RunDeadlines(runCtx, 250*time.Millisecond)
	}()
	cfg, h := svc.Consumer()
	return n.ConsumeBatch(ctx, cfg, h)
}

// startInventory serves the catalog and stock, and reserves, releases
// and commits stock on the saga's events.
func (n *Node) startInventory(s starting) error {
	ctx, mux, st, log := s.ctx, s.mux, s.st, s.log
	svc := inventory.New(st.db, st.outbox, log)
	svc.Routes(mux)
	cfg, h := svc.Consumer()
	return n.ConsumeBatch(ctx, cfg, h)
}

// startPayments moves money through the payment provider on the saga's
// events.
func (n *Node) startPayments(s starting) error {
	ctx, mux, st, log := s.ctx, s.mux, s.st, s.log
	pspURL, err := n.pspURL()
	if err != nil {
		return err
	}
	provider := payment.NewProviderClient(payment.ClientConfig{BaseURL: pspURL, APIKey: n.cfg.PSPAPIKey})
	n.reg.MustRegister(payment.ProviderCalls, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "ordermesh_breaker_state",
		Help:        "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
		ConstLabels: prometheus.Labels{"breaker": "psp"},
	}, provider.BreakerState))
	svc := payment.New(payment.Config{DB: st.db, Outbox: st.outbox, Logger: log, WebhookSecret: n.cfg.PSPWebhookSecret,
		Provider: provider})
	svc.Routes(mux)
	cfg, h := svc.Consumer()
	return n.ConsumeBatch(ctx, cfg, h)
}

// startShipping creates shipments for confirmed orders.
func (n *Node) startShipping(s starting) error {
	ctx, st := s.ctx, s.st
	cfg, h := shipping.New(st.db, st.outbox).Consumer()
	return n.ConsumeBatch(ctx, cfg, h)
}

// startNotifications writes customers' messages and delivers merchants'
// webhooks.
func (n *Node) startNotifications(s starting) error {
	ctx, runCtx, mux, st, log := s.ctx, s.runCtx, s.mux, s.st, s.log
	svc := notification.New(st.db, log)
	svc.Routes(mux)
	cfg, h := svc.Consumer()
	if err := n.ConsumeBatch(ctx, cfg, h); err != nil {
		return err
	}
	whCfg := n.cfg.Webhooks
	whCfg.DB, whCfg.Outbox, whCfg.Logger = st.db, st.outbox, log
	hooks := webhook.New(whCfg)
	hooks.Routes(mux)
	n.reg.MustRegister(webhook.Attempts, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ordermesh_webhook_breakers_open",
		Help: "Webhook endpoints this process is not attempting now because their circuit breaker is open or half-open.",
	}, func() float64 { return float64(hooks.OpenBreakers()) }))
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		hooks.Run(runCtx)
	}()
	// The webhooks consumer receives only the types some enabled
	// endpoint subscribes to (none: no delivery at all), and follows
	// the endpoints from then on.
	cfg, h = hooks.Consumer()
	var err error
	if cfg.Types, err = hooks.ConsumerTypes(ctx); err != nil {
		return fmt.Errorf("webhook subscriptions: %w", err)
	}
	c, err := n.consumeBatch(ctx, cfg, h)
	if err != nil {
		return err
	}
	hooks.Follow(c)
	return nil
}

// startPSP runs the payment provider simulator.
func (n *Node) startPSP(s starting) error {
	runCtx, mux, st, log := s.runCtx, s.mux, s.st, s.log
	notify := n.cfg.PSPNotifyURL
	if notify == "" {
		notify = n.URL()
	}
	sim := psp.New(st.db, psp.Config{Faults: n.cfg.PSP, Async: n.cfg.PSPAsync, NotifyURL: notify, Secret: n.cfg.PSPWebhookSecret,
		APIKey: n.cfg.PSPAPIKey}, log)
	sim.Routes(mux)
	n.pspAPI = sim.ProviderAPI()
	if n.pspListener != nil {
		srv := &http.Server{Handler: telemetry.Handler(n.pspAPI, nil), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
		go srv.Serve(n.pspListener)
		n.onClose = append(n.onClose, func() { srv.Close() })
	}
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		sim.RunNotifier(runCtx)
	}()
	return nil
}

// startGateway serves the gateway's own routes: the firehose, the admin
// API and the OpenAPI document. (The edge itself is mounted by mountAPI.)
func (n *Node) startGateway(s starting) error {
	httpx.Mount(s.mux, n.gatewayAPI())
	n.reg.MustRegister(gateway.RateLimited)
	return nil
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
		firehose.With("GET /api/admin/stream", n.firehose),
		httpx.Route{Class: "catalog", Cache: true}.With("GET /api/openapi.json", n.serveOpenAPI),
		admin.With("GET /api/admin/dlq", n.listDeadLetters),
		admin.With("GET /api/admin/dlq/{id}", n.showDeadLetter),
		admin.With("POST /api/admin/dlq/{id}/replay", n.replayDeadLetter),
		admin.With("POST /api/admin/dlq/replay", n.replayDeadLetters),
		admin.With("DELETE /api/admin/dlq", n.purgeDeadLetters),
		admin.With("GET /api/admin/orders/{id}/saga", n.saga),
		admin.With("GET /api/admin/health", n.health),
	}
}

// serveOpenAPI answers the API's OpenAPI document.
func (n *Node) serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
}

// starting is what a component's start gets.
type starting struct {
	ctx    context.Context // for setup
	runCtx context.Context // ends the background loops
	mux    *http.ServeMux  // its routes go here
	st     *store          // its database and outbox
	log    *slog.Logger
}
