package app

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/stdwebhook"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// servePprof serves the runtime profiles on their own listener, so they are
// never exposed on the API address by accident.
func (n *Node) servePprof(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof %s: %w", addr, err)
	}
	// Sample blocking and lock contention too: that is where a pipeline
	// that is slow without being busy spends its time.
	runtime.SetBlockProfileRate(int(100 * time.Microsecond))
	runtime.SetMutexProfileFraction(100)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	n.onClose = append(n.onClose, func() { srv.Close() })
	n.log.Info("pprof listening", "addr", ln.Addr().String())
	return nil
}

// serveMetrics serves /metrics on a listener of its own (a Prometheus
// scrape port), apart from the API that clients reach.
func (n *Node) serveMetrics(addr string) error {
	ln, err := listenOn("metrics-addr", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.metrics)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	go srv.Serve(ln)
	n.metricsURL = "http://" + ln.Addr().String() + "/metrics"
	n.onClose = append(n.onClose, func() { srv.Close() })
	return nil
}

// MetricsURL is where /metrics is served, or "" when it is not.
func (n *Node) MetricsURL() string { return n.metricsURL }

// URL is the node's HTTP base URL.
func (n *Node) URL() string {
	addr := n.listener.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "localhost"
	}
	return fmt.Sprintf("http://%s", net.JoinHostPort(host, fmt.Sprint(addr.Port)))
}

// NATSURL is the broker's TCP URL with the embedded broker's credentials
// in it, or "" for an in-process-only broker.
func (n *Node) NATSURL() string {
	if n.embedded != nil {
		return n.embedded.ClientURLWithCredentials()
	}
	return n.cfg.NATSURL
}

// PSPURL is the provider simulator's own base URL in an embedded node
// ("" when it has none).
func (n *Node) PSPURL() string {
	if n.pspListener == nil {
		return ""
	}
	return "http://" + n.pspListener.Addr().String()
}

func (n *Node) listen() error {
	ln, err := listenOn("addr", n.cfg.Addr)
	if err != nil {
		return err
	}
	n.listener = ln
	return nil
}

// shareProvider gives payments and the provider simulator of one node the
// same credentials, made here unless configured (the webhook secret in
// every mode, as before), and gives the simulator of an embedded node a
// listener of its own on loopback, where that node's payments finds it. A
// simulator served alone (serve psp) answers on the node's address.
func (n *Node) shareProvider() error {
	pay, sim := &n.cfg.Payments, &n.cfg.PSP
	share := func(a, b *string, prefix string) error {
		*a = cmp.Or(*a, *b)
		if *a == "" {
			secret, err := stdwebhook.NewSecret()
			if err != nil {
				return err
			}
			*a = strings.TrimPrefix(secret, prefix)
		}
		*b = cmp.Or(*b, *a)
		return nil
	}
	if err := share(&sim.Secret, &pay.WebhookSecret, ""); err != nil {
		return err
	}
	embedded := n.cfg.DataDir != ""
	if !embedded || !n.runsOutside() {
		return nil
	}
	if err := share(&sim.APIKey, &pay.Client.APIKey, "whsec_"); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cmp.Or(n.cfg.PSPListen, "127.0.0.1:0"))
	if err != nil {
		return fmt.Errorf("listen for the payment-provider simulator on %s: %w (pick another with --psp-listen)", cmp.Or(n.cfg.PSPListen, "127.0.0.1:0"), err)
	}
	n.pspListener = ln
	n.onClose = append(n.onClose, func() { ln.Close() })
	pay.Client.BaseURL = cmp.Or(pay.Client.BaseURL, "http://"+ln.Addr().String())
	return nil
}

// patternOf names a request to h by the ServeMux pattern it matches ("POST
// /psp/v1/{op}"), the same on its own listener and beside the API; "" when
// h is no ServeMux or nothing matches.
func patternOf(h http.Handler) func(*http.Request) string {
	return func(r *http.Request) string {
		if mux, ok := h.(*http.ServeMux); ok {
			_, p := mux.Handler(r)
			return p
		}
		return ""
	}
}

// serveOutside serves the provider simulator's own API: on its loopback
// listener in an embedded node, else beside the API (mountAPI).
func (n *Node) serveOutside(h http.Handler) {
	n.pspAPI = h
	if n.pspListener == nil {
		return
	}
	srv := &http.Server{Handler: telemetry.Handler(h, patternOf(h)), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	go srv.Serve(n.pspListener)
	n.onClose = append(n.onClose, func() { srv.Close() })
}

// outboxGauge is a gauge of service's outbox, read at scrape time (-1 when
// the database cannot answer within 2 s).
func outboxGauge(service, name, help string, read func(context.Context) (float64, error)) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"service": service}},
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			v, err := read(ctx)
			if err != nil {
				return -1
			}
			return v
		})
}

func (n *Node) serveHTTP(mux *http.ServeMux) {
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", n.ready)
	reg := n.reg
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), telemetry.ExportErrors)
	metrics := httpx.NewMetrics(reg)
	for name, st := range n.stores {
		if !emits(name) {
			continue
		}
		reg.MustRegister(
			outboxGauge(name, "ordermesh_outbox_oldest_unsent_seconds", "Age of the oldest outbox row not yet published to the broker (0 when none).",
				func(ctx context.Context) (float64, error) {
					age, err := st.outbox.OldestUnsent(ctx, time.Now())
					return age.Seconds(), err
				}),
			outboxGauge(name, "ordermesh_outbox_backlog", "Outbox rows committed and not yet published to the broker.",
				func(ctx context.Context) (float64, error) {
					n, err := st.outbox.Pending(ctx)
					return float64(n), err
				}))
	}
	reg.MustRegister(outbox.StepSeconds)
	n.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	routeOf := func(r *http.Request) string {
		if route, ok := gateway.RouteOf(r); ok {
			return route.Pattern // the route a gateway proxies, as the service declares it
		}
		if _, p := n.api.Handler(r); p != "" {
			return p
		}
		if strings.HasPrefix(r.URL.Path, "/psp/") {
			if p := patternOf(n.pspAPI)(r); p != "" {
				return p
			}
		}
		_, p := mux.Handler(r)
		return p
	}
	bodyTimeout := n.cfg.BodyTimeout
	if bodyTimeout <= 0 {
		bodyTimeout = 30 * time.Second
	}
	// ReadTimeout covers the body too; net/http lifts it once a handler has
	// read the whole request, so streams and long polls are not cut.
	// A declared /api/ route is classified once, here, for the span, the
	// access log, the metrics and the gateway's edge.
	classified := telemetry.Handler(httpx.CORS(n.cfg.CORSOrigins, httpx.Observe(mux, routeOf, n.log, metrics)), routeOf)
	classify := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			if route, ok := routes.Classify(r); ok {
				r = gateway.WithRoute(r, route)
			}
		}
		classified.ServeHTTP(w, r)
	})
	n.http = &http.Server{Handler: httpx.OneFraming(classify),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: bodyTimeout, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	n.httpDone = make(chan error, 1)
	go func() { n.httpDone <- n.http.Serve(n.listener) }()
}

// MaxOutboxLag is how old the oldest unpublished outbox row may be before
// /readyz reports the node not ready.
const MaxOutboxLag = 30 * time.Second

// ready answers 200 when the broker is connected, every database answers
// and every outbox is being published, else 503 with what is wrong.
func (n *Node) ready(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{}
	status := http.StatusOK
	switch {
	case n.broker == nil:
		checks["nats"] = "none (a gateway of static upstreams)"
	case n.broker.Healthy() != nil:
		checks[n.broker.Engine()] = n.broker.Healthy().Error()
		status = http.StatusServiceUnavailable
	default:
		checks[n.broker.Engine()] = "ok"
	}
	for _, up := range n.upstreams {
		checks["upstream_"+up.Name] = "ok"
		if !up.Ready() {
			checks["upstream_"+up.Name] = "no instance has answered its /readyz yet: requests for it would get 502"
			status = http.StatusServiceUnavailable
		}
	}
	for name, st := range n.stores {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		if err := st.answers(ctx); err != nil {
			checks[name+"_db"] = err.Error()
			status = http.StatusServiceUnavailable
		} else {
			checks[name+"_db"] = "ok"
		}
		if emits(name) {
			// A relay that cannot publish leaves rows waiting: the
			// services' events stop flowing, so this instance is not ready.
			switch age, err := st.outbox.OldestUnsent(ctx, time.Now()); {
			case err != nil:
				checks[name+"_outbox"] = err.Error()
				status = http.StatusServiceUnavailable
			case age > MaxOutboxLag:
				checks[name+"_outbox"] = fmt.Sprintf("the oldest unpublished event is %s old; the relay cannot publish", age.Round(time.Second))
				status = http.StatusServiceUnavailable
			default:
				checks[name+"_outbox"] = "ok"
			}
		}
		cancel()
	}
	writeJSON(w, status, checks)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
