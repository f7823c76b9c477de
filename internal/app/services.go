package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
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
		return n.mountGateway(mux)
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

// mountGateway proxies /api/… to the configured upstream instances, round
// robin. (The full gateway — auth, rate limits, balancing policies — is
// its own issue.)
func (n *Node) mountGateway(mux *http.ServeMux) error {
	for _, route := range gatewayRoutes {
		targets := n.cfg.Upstreams[route.service]
		if len(targets) == 0 {
			continue
		}
		proxies := make([]*httputil.ReverseProxy, 0, len(targets))
		for _, t := range targets {
			u, err := url.Parse(t)
			if err != nil || u.Scheme == "" || u.Host == "" {
				return fmt.Errorf("--upstream %s=%q: want an http://host:port URL", route.service, t)
			}
			proxies = append(proxies, httputil.NewSingleHostReverseProxy(u))
		}
		var next atomic.Uint64
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			proxies[next.Add(1)%uint64(len(proxies))].ServeHTTP(w, r)
		})
		mux.Handle(route.prefix, handler)
		if !strings.HasSuffix(route.prefix, "/") {
			mux.Handle(route.prefix+"/", handler)
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
