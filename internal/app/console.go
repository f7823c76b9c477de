package app

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
)

// The console: an operator's web UI served by the gateway at /console. Its
// files are public and hold no data; every figure it shows comes from the
// admin API below (and the rest of the API), called with the admin token or
// API key the operator signs in with. A customer token or none gets nothing.

//go:embed console
var consoleFiles embed.FS

// openAPI is the OpenAPI 3.1 document of the HTTP API, served at
// /api/openapi.json. TestOpenAPIMatchesTheRoutes keeps it equal to the
// routes the services register.
//
//go:embed openapi.json
var openAPI []byte

// mountConsole serves the console's files under /console/.
func (n *Node) mountConsole(mux *http.ServeMux) {
	files, _ := fs.Sub(consoleFiles, "console")
	static := http.StripPrefix("/console/", http.FileServerFS(files))
	serve := func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		static.ServeHTTP(w, r)
	}
	mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /console/", serve)
}

// listDeadLetters lists every dead letter.
func (n *Node) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	dls, err := n.broker.DeadLetters(r.Context())
	if err != nil {
		httpx.Error(w, r, n.log, apperr.New(apperr.Unavailable, "", "dead letters: %v", err))
		return
	}
	if dls == nil {
		dls = []bus.DeadLetter{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": dls})
}

// showDeadLetter shows one dead letter with its data.
func (n *Node) showDeadLetter(w http.ResponseWriter, r *http.Request) {
	id, ok := n.deadLetterID(w, r)
	if !ok {
		return
	}
	dl, err := n.broker.DeadLetter(r.Context(), id)
	if err != nil {
		n.deadLetterError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letter": dl, "data": dataJSON(dl.Data)})
}

// replayDeadLetter sends one dead letter back to its consumer.
func (n *Node) replayDeadLetter(w http.ResponseWriter, r *http.Request) {
	id, ok := n.deadLetterID(w, r)
	if !ok {
		return
	}
	if err := n.broker.Replay(r.Context(), id); err != nil {
		n.deadLetterError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"replayed": []uint64{id}})
}

// replayDeadLetters sends every dead letter back to its consumer.
func (n *Node) replayDeadLetters(w http.ResponseWriter, r *http.Request) {
	dls, err := n.broker.DeadLetters(r.Context())
	if err != nil {
		httpx.Error(w, r, n.log, apperr.New(apperr.Unavailable, "", "dead letters: %v", err))
		return
	}
	replayed := []uint64{}
	for _, dl := range dls {
		if err := n.broker.Replay(r.Context(), dl.ID); err != nil {
			n.deadLetterError(w, r, err)
			return
		}
		replayed = append(replayed, dl.ID)
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"replayed": replayed})
}

// purgeDeadLetters deletes every dead letter, when the caller confirms it.
func (n *Node) purgeDeadLetters(w http.ResponseWriter, r *http.Request) {
	// Purging loses events for good: the caller must say so.
	if r.URL.Query().Get("confirm") != "purge" {
		httpx.Error(w, r, n.log, apperr.Invalidf("confirm", "purging deletes every dead letter for good: add ?confirm=purge"))
		return
	}
	purged, err := n.broker.PurgeDeadLetters(r.Context())
	if err != nil {
		httpx.Error(w, r, n.log, apperr.New(apperr.Unavailable, "", "purge: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"purged": purged})
}

func (n *Node) deadLetterID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		httpx.Error(w, r, n.log, apperr.Invalidf("id", "a dead letter id is a positive integer, got %q", r.PathValue("id")))
		return 0, false
	}
	return id, true
}

func (n *Node) deadLetterError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, bus.ErrDeadLetterNotFound) {
		httpx.Error(w, r, n.log, apperr.New(apperr.NotFound, "", "%v", err))
		return
	}
	httpx.Error(w, r, n.log, apperr.New(apperr.Unavailable, "", "%v", err))
}

// dataJSON is data as JSON when it is JSON, else as a string.
func dataJSON(data []byte) any {
	if json.Valid(data) {
		return json.RawMessage(data)
	}
	return string(data)
}

// sagaScan bounds how many messages of the order's partition one saga
// view reads from the broker.
const sagaScan = 50_000

// saga answers one order's events, from every service, as the broker
// stored them since ?since (RFC 3339; the order's created_at, which the
// console reads first), each with the trace its span belongs to.
func (n *Node) saga(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || len(id) > 128 || strings.ContainsAny(id, " \t\r\n") {
		httpx.Error(w, r, n.log, apperr.Invalidf("id", "not an order id"))
		return
	}
	since := time.Now().Add(-time.Hour)
	if s := r.URL.Query().Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			httpx.Error(w, r, n.log, apperr.Invalidf("since", "want an RFC 3339 time, such as the order's created_at: %v", err))
			return
		}
		since = t.Add(-time.Second) // producers' clocks may trail the orders service's a little
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	evs, truncated, err := n.broker.History(ctx, id, since, sagaScan)
	if err != nil {
		httpx.Error(w, r, n.log, apperr.New(apperr.Unavailable, "", "the order's events: %v", err))
		return
	}
	type step struct {
		ID        string          `json:"id"`
		Type      string          `json:"type"`
		Source    string          `json:"source"`
		Time      time.Time       `json:"time"`
		CausedBy  string          `json:"causation_id,omitempty"`
		TraceID   string          `json:"trace_id,omitempty"`
		Data      json.RawMessage `json:"data"`
		SincePrev float64         `json:"since_previous_ms"`
	}
	out := []step{}
	for i, ev := range evs {
		s := step{ID: ev.ID, Type: ev.Type, Source: ev.Source, Time: ev.Time, CausedBy: ev.CausationID, Data: ev.Data,
			TraceID: telemetry.TraceID(telemetry.WithTraceParent(r.Context(), ev.TraceParent))}
		if i > 0 {
			s.SincePrev = float64(ev.Time.Sub(evs[i-1].Time).Microseconds()) / 1000
		}
		out = append(out, s)
	}
	writeJSON(w, http.StatusOK, map[string]any{"order_id": id, "events": out, "truncated": truncated,
		"trace_url": traceURL()})
}

// traceURL is where the console links a trace id, from
// ORDERMESH_TRACE_URL (e.g. http://localhost:16686/trace/{trace_id} for
// Jaeger), when traces are exported.
func traceURL() string {
	if !telemetry.Enabled() {
		return ""
	}
	return os.Getenv("ORDERMESH_TRACE_URL")
}

// health answers the pipeline's state from this node's metrics: each
// consumer's lag, dead letters, outbox backlog, breakers, and the orders
// finished so far with their total time (the console turns successive
// answers into rates and latencies).
func (n *Node) health(w http.ResponseWriter, r *http.Request) {
	families, err := n.reg.Gather()
	if err != nil {
		httpx.Error(w, r, n.log, apperr.New(apperr.Unavailable, "", "metrics: %v", err))
		return
	}
	out := map[string]any{"at": time.Now().UTC()}
	series := func(name, label string) map[string]float64 {
		m := map[string]float64{}
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			for _, s := range f.GetMetric() {
				m[labelValue(s, label)] += metricValue(s)
			}
		}
		return m
	}
	out["consumer_pending"] = series("ordermesh_consumer_pending", "consumer")
	out["consumer_ack_pending"] = series("ordermesh_consumer_ack_pending", "consumer")
	out["dead_letters"] = series("ordermesh_dlq_depth", "")[""]
	out["outbox_backlog"] = series("ordermesh_outbox_backlog", "service")
	out["outbox_oldest_unsent_seconds"] = series("ordermesh_outbox_oldest_unsent_seconds", "service")
	out["breakers"] = series("ordermesh_breaker_state", "breaker")
	out["webhook_breakers_open"] = series("ordermesh_webhook_breakers_open", "")[""]
	out["orders_finished"] = series("ordermesh_orders_finished_total", "status")
	lat := map[string]map[string]float64{}
	for _, f := range families {
		if f.GetName() != "ordermesh_order_duration_seconds" {
			continue
		}
		for _, s := range f.GetMetric() {
			h := s.GetHistogram()
			lat[labelValue(s, "status")] = map[string]float64{"count": float64(h.GetSampleCount()), "sum_seconds": h.GetSampleSum()}
		}
	}
	out["order_duration"] = lat
	writeJSON(w, http.StatusOK, out)
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}
