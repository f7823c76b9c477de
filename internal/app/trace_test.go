package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/payment"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
	"github.com/ordermesh/ordermesh/internal/psp"
)

// TestOneTracePerOrderAcrossProcesses: with a tracer provider installed,
// one completed order is one trace. Its spans cover the request, every
// emission and every handling of the saga, in the node that took the
// order and in a second node (payments and shipping, as `serve` would run
// them) that sees the order only through the broker; every span's parent
// is in the trace.
func TestOneTracePerOrderAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("two nodes")
	}
	exp := memoryTracer(t)

	dir := t.TempDir()
	s := startStack(t, Config{DataDir: dir, NATSListen: "127.0.0.1:0",
		Services: []string{"orders", "inventory", "notifications", "psp", "gateway"},
		Webhooks: webhook.Config{AllowPrivate: true, Schedule: testSchedule}})
	second, err := Start(context.Background(), Config{
		Services: []string{"payments", "shipping"}, Addr: "127.0.0.1:0", NATSURL: s.n.NATSURL(),
		DSNs:           map[string]string{"payments": "sqlite:" + filepath.Join(dir, "p2.db"), "shipping": "sqlite:" + filepath.Join(dir, "s2.db")},
		InternalSecret: strings.Repeat("0123456789abcdef", 4), Payments: s.n.cfg.Payments,
		Logger: bustest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close(context.Background())

	s.subscribe(newReceiver(t, nil), event.OrderCompleted) // a merchant's webhook
	s.addProduct("TRACED", 5)
	o := s.place(orderBody("ada", psp.TokenOK, order.ItemRequest{SKU: "TRACED", Quantity: 1}))
	t.Cleanup(func() {
		if t.Failed() {
			for _, sp := range exp.GetSpans().Snapshots() {
				t.Logf("span %s trace %s parent %s attrs %v", sp.Name(), sp.SpanContext().TraceID(), sp.Parent().SpanID(), sp.Attributes())
			}
		}
	})
	if got := s.settle([]string{o.ID}, 30*time.Second)[o.ID]; got.Status != order.Completed {
		t.Fatalf("order ended %s, want completed", got.Status)
	}

	// The order's spans: those of the trace its order.placed emission is in.
	want := []string{
		"POST /api/orders", "emit order.placed",
		"handle order.placed", "emit stock.reserved",
		"handle stock.reserved", "HTTP POST", "POST /psp/v1/{op}", "emit payment.authorized",
		"handle payment.authorized", "emit order.confirmed",
		"handle order.confirmed", "emit shipment.created",
		"handle shipment.created", "emit stock.committed", "emit payment.captured",
		"handle payment.captured", "emit order.completed",
		"handle order.completed", "webhook attempt",
	}
	var trace []sdktrace.ReadOnlySpan
	bustest.Eventually(t, 10*time.Second, "the order's trace to hold every step", func() bool {
		trace = orderTrace(exp.GetSpans().Snapshots(), o.ID)
		names := map[string]bool{}
		for _, sp := range trace {
			names[sp.Name()] = true
		}
		for _, w := range want {
			if !names[w] {
				return false
			}
		}
		return true
	})
	ids := map[string]bool{}
	for _, sp := range trace {
		ids[sp.SpanContext().SpanID().String()] = true
	}
	roots := 0
	for _, sp := range trace {
		if !sp.Parent().IsValid() {
			roots++
			if !strings.HasPrefix(sp.Name(), "POST /api/orders") {
				t.Errorf("span %q has no parent; only the request should be the root", sp.Name())
			}
			continue
		}
		if !ids[sp.Parent().SpanID().String()] {
			t.Errorf("span %q: its parent is not in the trace", sp.Name())
		}
	}
	if roots != 1 {
		t.Errorf("trace has %d roots, want 1", roots)
	}
	// Handling in the second node is parented across the broker: the
	// payments consumer's handling of stock.reserved is a child of the
	// emission of stock.reserved in the first node.
	byID := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range trace {
		byID[sp.SpanContext().SpanID().String()] = sp
	}
	found := false
	for _, sp := range trace {
		if sp.Name() == "handle stock.reserved" && attr(sp, telemetry.AttrConsumer) == payment.ConsumerName {
			found = true
			if p := byID[sp.Parent().SpanID().String()]; p == nil || p.Name() != "emit stock.reserved" {
				t.Errorf("payments' handling of stock.reserved is not a child of its emission")
			}
		}
	}
	if !found {
		t.Error("no span of the second node's payments consumer in the trace")
	}
}

// orderTrace is every span of the trace in which order id was placed.
func orderTrace(spans []sdktrace.ReadOnlySpan, id string) []sdktrace.ReadOnlySpan {
	var traceID string
	for _, sp := range spans {
		if sp.Name() == "emit order.placed" && attr(sp, telemetry.AttrOrderID) == id {
			traceID = sp.SpanContext().TraceID().String()
		}
	}
	if traceID == "" {
		return nil
	}
	var out []sdktrace.ReadOnlySpan
	for _, sp := range spans {
		if sp.SpanContext().TraceID().String() == traceID {
			out = append(out, sp)
		}
	}
	slices.SortFunc(out, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	return out
}

// attr is the string value of one of a span's attributes.
func attr(sp sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, kv := range sp.Attributes() {
		if kv.Key == key {
			return kv.Value.AsString()
		}
	}
	return ""
}

// TestCancelsStayInTheOrdersTrace: a customer's cancel and a deadline's
// continue the trace the order was placed in (the request that asked for
// the cancel is linked), so the compensation is in the order's one trace.
func TestCancelsStayInTheOrdersTrace(t *testing.T) {
	exp := memoryTracer(t)

	// A provider slower than the deadline: orders wait, pending.
	s := startStack(t, Config{Orders: order.Config{Deadline: time.Second}, PSP: psp.Config{Faults: psp.Faults{Latency: 3 * time.Second}}})
	s.addProduct("TRACED-CANCEL", 5)
	byCustomer := s.place(orderBody("ada", psp.TokenOK, order.ItemRequest{SKU: "TRACED-CANCEL", Quantity: 1}))
	if resp := s.do("POST", "/api/orders/"+byCustomer.ID+"/cancel", nil, nil, nil); resp.StatusCode/100 != 2 {
		t.Fatalf("cancel = %d", resp.StatusCode)
	}
	byDeadline := s.place(orderBody("bob", psp.TokenOK, order.ItemRequest{SKU: "TRACED-CANCEL", Quantity: 1}))
	got := s.settle([]string{byCustomer.ID, byDeadline.ID}, 30*time.Second)
	if got[byDeadline.ID].CancelReason != event.ReasonTimeout || got[byCustomer.ID].CancelReason != event.ReasonCustomerRequest {
		t.Fatalf("orders ended %+v, %+v", got[byCustomer.ID], got[byDeadline.ID])
	}
	for _, id := range []string{byCustomer.ID, byDeadline.ID} {
		bustest.Eventually(t, 10*time.Second, "order.cancelled in the trace "+id+" was placed in", func() bool {
			for _, sp := range orderTrace(exp.GetSpans().Snapshots(), id) {
				if sp.Name() == "emit order.cancelled" {
					return true
				}
			}
			return false
		})
	}
	for _, sp := range orderTrace(exp.GetSpans().Snapshots(), byCustomer.ID) {
		if sp.Name() == "order order.cancelled" && len(sp.Links()) == 0 {
			t.Error("the customer's cancel is not linked to the request that asked for it")
		}
	}
}

// TestAsyncPaymentStaysInTheOrdersTrace: with a provider that answers by
// webhook, everything after the authorization (confirmed, shipped,
// captured, completed) is in the trace the order was placed in, not in a
// trace of the webhook's own.
func TestAsyncPaymentStaysInTheOrdersTrace(t *testing.T) {
	exp := memoryTracer(t)

	s := startStack(t, Config{PSP: psp.Config{Async: true}})
	s.addProduct("TRACED-ASYNC", 5)
	o := s.place(orderBody("lea", psp.TokenOK, order.ItemRequest{SKU: "TRACED-ASYNC", Quantity: 1}))
	if got := s.settle([]string{o.ID}, 30*time.Second)[o.ID]; got.Status != order.Completed {
		t.Fatalf("order ended %s", got.Status)
	}
	bustest.Eventually(t, 10*time.Second, "the order's completion in the trace it was placed in", func() bool {
		names := map[string]bool{}
		for _, sp := range orderTrace(exp.GetSpans().Snapshots(), o.ID) {
			names[sp.Name()] = true
		}
		return names["emit payment.authorized"] && names["emit order.confirmed"] && names["emit order.completed"]
	})
}

// TestHealthChecksMakeNoSpans: the gateway's checks of its upstreams'
// /readyz, every few seconds per instance, record no span.
func TestHealthChecksMakeNoSpans(t *testing.T) {
	exp := memoryTracer(t)
	s := startStack(t, Config{NATSListen: "127.0.0.1:0"})
	g := s.gatewayTo(map[string][]string{"inventory": {s.base}})
	bustest.Eventually(t, 10*time.Second, "the gateway ready (its upstream checked)", func() bool {
		return g.do("GET", "/readyz", nil, nil, nil).StatusCode == 200
	})
	for _, sp := range exp.GetSpans().Snapshots() {
		for _, kv := range sp.Attributes() {
			if strings.Contains(kv.Value.Emit(), "/readyz") {
				t.Fatalf("a health check made span %q (%s=%s)", sp.Name(), kv.Key, kv.Value.Emit())
			}
		}
	}
}

// TestSpansAndDeliveriesNameTheirOrder: a request about an order is a
// span named by its route that carries the order's id, and a merchant's
// webhook carries the order's trace in traceparent.
func TestSpansAndDeliveriesNameTheirOrder(t *testing.T) {
	exp := memoryTracer(t)
	s := webhookStack(t)
	parents := make(chan string, 10)
	merchant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parents <- r.Header.Get("traceparent")
	}))
	defer merchant.Close()
	if resp := s.do("POST", "/api/webhooks/endpoints", nil, map[string]any{"url": merchant.URL, "event_types": []string{event.OrderPlaced}}, nil); resp.StatusCode != 201 {
		t.Fatalf("create endpoint: %d", resp.StatusCode)
	}
	s.addProduct("NAMED", 5)
	o := s.place(orderBody("ada", psp.TokenOK, order.ItemRequest{SKU: "NAMED", Quantity: 1}))
	s.get(o.ID)
	var traceID string
	for _, sp := range orderTrace(exp.GetSpans().Snapshots(), o.ID) {
		traceID = sp.SpanContext().TraceID().String()
	}
	select {
	case tp := <-parents:
		if traceID == "" || !strings.Contains(tp, traceID) {
			t.Errorf("the webhook's traceparent %q is not in the order's trace %s", tp, traceID)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no webhook delivered")
	}
	found := false
	for _, sp := range exp.GetSpans().Snapshots() {
		if sp.Name() == "GET /api/orders/{id}" && attr(sp, telemetry.AttrOrderID) == o.ID {
			found = true
		}
	}
	if !found {
		t.Error("no span GET /api/orders/{id} with the order's id")
	}
}

// memoryTracer installs a tracer provider that keeps every span in memory
// for the test, and puts the previous one back after it.
func memoryTracer(t *testing.T) *tracetest.InMemoryExporter {
	exp := tracetest.NewInMemoryExporter()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	return exp
}
