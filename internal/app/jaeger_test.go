package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/psp"
)

// JaegerEnv names the Jaeger binary the real-tracer test runs (.ci/run
// builds it from Jaeger's Go module); without it the test is skipped.
const JaegerEnv = "ORDERMESH_TEST_JAEGER"

// jaegerConfig is a Jaeger (v2) on loopback: OTLP in over gRPC and HTTP,
// spans in memory, the query API out.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
extensions:
  jaeger_storage: {backends: {mem: {memory: {max_traces: 100000}}}}
  jaeger_query:
    storage: {traces: mem}
    http: {endpoint: "%s"}
    grpc: {endpoint: "%s"}
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "%s"}
      http: {endpoint: "%s"}
processors:
  batch: {timeout: 100ms}
exporters:
  jaeger_storage_exporter: {trace_storage: mem}
`

// jaegerTrace is a trace as Jaeger's query API answers it.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			TraceID string `json:"traceID"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		Tags []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
}

// TestOneTracePerOrderInJaeger: ordermesh exports to a real Jaeger, over
// OTLP/gRPC and over OTLP/HTTP; for every path an order can take
// (completed, declined, out of stock, cancelled by its customer, timed
// out, paid asynchronously), Jaeger holds exactly one trace with the
// order's spans, and every span's parent is in it.
func TestOneTracePerOrderInJaeger(t *testing.T) {
	bin := os.Getenv(JaegerEnv)
	if bin == "" || testing.Short() {
		t.Skip("needs " + JaegerEnv + " (a Jaeger binary; .ci/run builds one)")
	}
	query, grpcIn, httpIn := freeAddr(t), freeAddr(t), freeAddr(t)
	conf := filepath.Join(t.TempDir(), "jaeger.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf(jaegerConfig, query, freeAddr(t), grpcIn, httpIn)), 0o600)
	j := &child{t: t, name: "jaeger", bin: bin, args: []string{"--config", "file:" + conf}}
	j.start()
	t.Cleanup(j.kill)
	bustest.Eventually(t, 60*time.Second, "Jaeger's query API", func() bool {
		resp, err := http.Get("http://" + query + "/api/services")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	orders := map[string]string{} // order id → its path, over a protocol
	for _, protocol := range []struct{ name, endpoint string }{{"grpc", grpcIn}, {"http/protobuf", "http://" + httpIn}} {
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.name)
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", protocol.endpoint)
		for path, id := range placeEveryPath(t) {
			orders[id] = protocol.name + " " + path
		}
	}

	// Spans are exported in batches, a child's sometimes before its
	// parent's: wait until every order's trace is whole (each parent
	// there), or 30 s, then say what is wrong with the ones that are not.
	traces := map[string]jaegerTrace{}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) { // polling Jaeger's query API
		if readTraces(query, traces) && everyTraceWhole(traces, orders) {
			break
		}
	}
	for id, path := range orders {
		ids := tracesOf(traces, id)
		if len(ids) != 1 {
			t.Errorf("%s order %s is in %d traces, want 1", path, id, len(ids))
			continue
		}
		tr := traces[ids[0]]
		spans := map[string]bool{}
		for _, sp := range tr.Spans {
			spans[sp.SpanID] = true
		}
		for _, sp := range tr.Spans {
			for _, ref := range sp.References {
				if ref.RefType == "CHILD_OF" && !spans[ref.SpanID] {
					t.Errorf("%s order %s: span %q's parent is not in its trace", path, id, sp.OperationName)
				}
			}
		}
		t.Logf("%s order: one trace of %d spans", path, len(tr.Spans))
	}
}

// readTraces replaces traces with what Jaeger holds for ordermesh.
func readTraces(query string, traces map[string]jaegerTrace) bool {
	resp, err := http.Get("http://" + query + "/api/traces?service=ordermesh&limit=2000&lookback=1h")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var body struct{ Data []jaegerTrace }
	if json.NewDecoder(resp.Body).Decode(&body) != nil {
		return false
	}
	clear(traces)
	for _, tr := range body.Data {
		traces[tr.TraceID] = tr
	}
	return true
}

// everyTraceWhole reports whether each order is in a trace whose spans'
// parents are all in it too.
func everyTraceWhole(traces map[string]jaegerTrace, orders map[string]string) bool {
	for id := range orders {
		ids := tracesOf(traces, id)
		if len(ids) == 0 {
			return false
		}
		for _, tid := range ids {
			spans := map[string]bool{}
			for _, sp := range traces[tid].Spans {
				spans[sp.SpanID] = true
			}
			for _, sp := range traces[tid].Spans {
				for _, ref := range sp.References {
					if ref.RefType == "CHILD_OF" && !spans[ref.SpanID] {
						return false
					}
				}
			}
		}
	}
	return true
}

// tracesOf are the ids of the traces with an event of order id: its saga
// (a request that only reads the order is a trace of its own).
func tracesOf(traces map[string]jaegerTrace, id string) []string {
	var out []string
	for tid, tr := range traces {
		for _, sp := range tr.Spans {
			event := strings.HasPrefix(sp.OperationName, "emit ") || strings.HasPrefix(sp.OperationName, "handle ")
			if event && hasTag(sp.Tags, "ordermesh.order.id", id) {
				out = append(out, tid)
				break
			}
		}
	}
	return out
}

func hasTag(tags []struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}, key, value string) bool {
	for _, tg := range tags {
		if tg.Key == key && fmt.Sprint(tg.Value) == value {
			return true
		}
	}
	return false
}

// placeEveryPath runs ordermesh (as `run` does, exporting by the OTEL_*
// variables set) three times, for the paths that need different
// settings, and returns the order of each path.
func placeEveryPath(t *testing.T) map[string]string {
	out := map[string]string{}
	run := func(cfg Config, f func(s *stack)) {
		s := startStack(t, cfg)
		f(s)
		s.n.Close(context.Background()) // flushes the spans
	}
	run(Config{}, func(s *stack) {
		s.addProduct("JAEGER", 5)
		s.addProduct("JAEGER-ONE", 1)
		out["completed"] = s.place(orderBody("ada", psp.TokenOK, order.ItemRequest{SKU: "JAEGER", Quantity: 1})).ID
		out["declined"] = s.place(orderBody("bob", psp.TokenDecline, order.ItemRequest{SKU: "JAEGER", Quantity: 1})).ID
		out["out of stock"] = s.place(orderBody("cy", psp.TokenOK, order.ItemRequest{SKU: "JAEGER-ONE", Quantity: 2})).ID
		s.settle([]string{out["completed"], out["declined"], out["out of stock"]}, 30*time.Second)
	})
	// A provider slower than the deadline: the customer cancels one order
	// while it waits, the deadline cancels the other.
	run(Config{Orders: order.Config{Deadline: time.Second}, PSP: psp.Config{Faults: psp.Faults{Latency: 2 * time.Second}}}, func(s *stack) {
		s.addProduct("JAEGER", 5)
		out["customer cancel"] = s.place(orderBody("dee", psp.TokenOK, order.ItemRequest{SKU: "JAEGER", Quantity: 1})).ID
		s.do("POST", "/api/orders/"+out["customer cancel"]+"/cancel", nil, nil, nil)
		out["timeout"] = s.place(orderBody("eve", psp.TokenOK, order.ItemRequest{SKU: "JAEGER", Quantity: 1})).ID
		got := s.settle([]string{out["customer cancel"], out["timeout"]}, 30*time.Second)
		if got[out["timeout"]].CancelReason != event.ReasonTimeout {
			t.Errorf("the slow order ended %s/%s, want cancelled/timeout", got[out["timeout"]].Status, got[out["timeout"]].CancelReason)
		}
		// Its compensations too: wait until inventory has released it.
		bustest.Eventually(t, 10*time.Second, "the stock released", func() bool {
			var ledger []inventory.Ledger
			s.do("GET", "/api/admin/inventory/ledger", nil, nil, &ledger)
			return len(ledger) == 1 && ledger[0].Reserved == 0
		})
	})
	run(Config{PSP: psp.Config{Async: true}}, func(s *stack) {
		s.addProduct("JAEGER", 5)
		out["asynchronous payment"] = s.place(orderBody("fay", psp.TokenOK, order.ItemRequest{SKU: "JAEGER", Quantity: 1})).ID
		s.settle([]string{out["asynchronous payment"]}, 30*time.Second)
	})
	return out
}
