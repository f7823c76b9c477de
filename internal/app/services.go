package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/notification"
	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/payment"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/sse"
	"github.com/ordermesh/ordermesh/internal/psp"
	"github.com/ordermesh/ordermesh/internal/shipping"
)

// startServices builds each configured service on its store, mounts its
// routes on mux and starts its consumers and background loops (which end
// with runCtx).
func (n *Node) startServices(ctx, runCtx context.Context, mux *http.ServeMux) error {
	for _, name := range n.cfg.Services {
		if err := n.startService(ctx, runCtx, mux, name); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
	}
	return nil
}

func (n *Node) startService(ctx, runCtx context.Context, mux *http.ServeMux, name string) error {
	st := n.stores[name]
	log := n.log.With("service", name)
	switch name {
	case "inventory":
		svc := inventory.New(st.db, st.outbox, log)
		svc.Routes(mux)
		cfg, h := svc.Consumer()
		return n.ConsumeBatch(ctx, cfg, h)
	case "orders":
		svc := order.New(order.Config{DB: st.db, Outbox: st.outbox, Logger: log, Deadline: n.cfg.OrderDeadline,
			Changed: func(id string) { n.Bus.Changed("order", id) }})
		svc.Routes(mux)
		// Long polls and event streams on any instance are woken by the
		// broker, whichever instance changed the order.
		stopWatch, err := n.Bus.OnChanged("order", svc.Notify)
		if err != nil {
			return err
		}
		n.onClose = append(n.onClose, stopWatch)
		n.relays.Add(1)
		go func() {
			defer n.relays.Done()
			svc.RunDeadlines(runCtx, 250*time.Millisecond)
		}()
		cfg, h := svc.Consumer()
		return n.ConsumeBatch(ctx, cfg, h)
	case "payments":
		pspURL := n.cfg.PSPURL
		if pspURL == "" {
			pspURL = n.URL()
		}
		svc := payment.New(payment.Config{DB: st.db, Outbox: st.outbox, Logger: log, WebhookSecret: n.cfg.PSPWebhookSecret,
			Provider: payment.NewProviderClient(payment.ClientConfig{BaseURL: pspURL})})
		svc.Routes(mux)
		cfg, h := svc.Consumer()
		return n.ConsumeBatch(ctx, cfg, h)
	case "shipping":
		cfg, h := shipping.New(st.db, st.outbox).Consumer()
		return n.ConsumeBatch(ctx, cfg, h)
	case "notifications":
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
		n.relays.Add(1)
		go func() {
			defer n.relays.Done()
			hooks.Run(runCtx)
		}()
		cfg, h = hooks.Consumer()
		return n.ConsumeBatch(ctx, cfg, h)
	case "psp":
		notify := n.cfg.PSPNotifyURL
		if notify == "" {
			notify = n.URL()
		}
		sim := psp.New(st.db, psp.Config{Faults: n.cfg.PSP, Async: n.cfg.PSPAsync, NotifyURL: notify, Secret: n.cfg.PSPWebhookSecret}, log)
		sim.Routes(mux)
		n.relays.Add(1)
		go func() {
			defer n.relays.Done()
			sim.RunNotifier(runCtx)
		}()
		return nil
	case "gateway":
		mux.HandleFunc("GET /api/admin/stream", n.firehose)
		return n.mountGateway(runCtx, mux)
	}
	return fmt.Errorf("unknown service %q", name)
}

// gatewayRoutes maps path prefixes to the service that answers them.
var gatewayRoutes = []struct{ prefix, service string }{
	{"/api/orders", "orders"},
	{"/api/products", "inventory"},
	{"/api/admin/inventory/", "inventory"},
	{"/api/admin/psp/", "psp"},
	{"/psp/", "psp"},
	{"/api/admin/notifications", "notifications"},
	{"/api/webhooks/", "notifications"},
	{"/api/psp/webhooks", "payments"},
}

// mountGateway proxies /api/… to the configured upstream instances, each
// upstream with its balancing policy (--lb), passive ejection, active
// health checks and retries on another instance where safe. (Auth, rate
// limits and caching are still to come.)
func (n *Node) mountGateway(ctx context.Context, mux *http.ServeMux) error {
	ups := map[string]*gateway.Upstream{}
	for svc, targets := range n.cfg.Upstreams {
		var instances []*gateway.Instance
		for _, t := range targets {
			in, err := gateway.NewInstance(t)
			if err != nil {
				return fmt.Errorf("--upstream %s: %w", svc, err)
			}
			instances = append(instances, in)
		}
		up, err := gateway.NewUpstream(svc, n.cfg.Balance[svc], instances)
		if err != nil {
			return fmt.Errorf("--lb %s: %w", svc, err)
		}
		ups[svc] = up
		n.relays.Add(1)
		go func() {
			defer n.relays.Done()
			up.CheckHealth(ctx, 2*time.Second)
		}()
	}
	for _, route := range gatewayRoutes {
		up, ok := ups[route.service]
		if !ok {
			continue
		}
		mux.Handle(route.prefix, up.Handler())
		if !strings.HasSuffix(route.prefix, "/") {
			mux.Handle(route.prefix+"/", up.Handler())
		}
	}
	return nil
}

// firehose streams every event in EVENTS as Server-Sent Events: id = stream
// sequence, event = type, data = the CloudEvent in JSON (structured mode).
// Last-Event-ID resumes from the broker's history.
func (n *Node) firehose(w http.ResponseWriter, r *http.Request) {
	after, err := sse.LastEventID(r, r.URL.Query().Get("after"))
	if err != nil {
		httpx.Error(w, r, n.log, apperr.Invalidf("Last-Event-ID", "%v", err))
		return
	}
	stream, err := sse.Start(w)
	if err != nil {
		httpx.Error(w, r, n.log, err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var mu sync.Mutex // events and keep-alives must not interleave
	go func() {
		ping := time.NewTicker(15 * time.Second)
		defer ping.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ping.C:
				// Comments interleave safely only between events, so the
				// keep-alive goes through the same lock as the events.
				mu.Lock()
				err := stream.Comment("keep-alive")
				mu.Unlock()
				if err != nil {
					cancel()
					return
				}
			}
		}
	}()
	err = n.Bus.Tail(ctx, uint64(after), func(seq uint64, ev bus.Event) error {
		data, _ := json.Marshal(map[string]any{
			"specversion": "1.0", "id": ev.ID, "type": ev.Type, "source": ev.Source, "subject": ev.Subject,
			"time": ev.Time, "correlationid": ev.CorrelationID, "causationid": ev.CausationID, "data": ev.Data,
		})
		mu.Lock()
		defer mu.Unlock()
		return stream.Event(strconv.FormatUint(seq, 10), ev.Type, data)
	})
	if err != nil && ctx.Err() == nil {
		n.log.Warn("firehose", "err", err)
	}
}
