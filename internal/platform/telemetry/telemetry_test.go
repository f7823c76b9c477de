package telemetry_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
)

// TestSetupExportsOverOTLPOnlyWhenAsked: with OTEL_EXPORTER_OTLP_ENDPOINT
// set, spans reach that collector over OTLP/HTTP when the provider shuts
// down; without it, Setup installs nothing.
func TestSetupExportsOverOTLPOnlyWhenAsked(t *testing.T) {
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	if _, err := telemetry.Setup(context.Background(), telemetry.Process{Service: "test"}); err != nil {
		t.Fatal(err)
	}
	if otel.GetTracerProvider() != prev {
		t.Fatal("Setup installed a provider with no OTLP endpoint set")
	}

	var got atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			got.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", strings.TrimPrefix(collector.URL, "http://")) // host:port, as people write it
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Process{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := telemetry.Tracer().Start(context.Background(), "one")
	if tp := telemetry.TraceParent(telemetry.WithTraceParent(context.Background(), "")); tp != "" {
		t.Errorf("an empty traceparent gave %q", tp)
	}
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got.Load() == 0 {
		t.Fatal("the collector received no OTLP trace export")
	}
}

// TestTraceParentRoundTrips: a traceparent continued from an event is the
// parent of the spans started under it, and malformed ones are ignored.
func TestTraceParentRoundTrips(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := telemetry.WithTraceParent(context.Background(), tp)
	if got := telemetry.TraceParent(ctx); got != tp {
		t.Fatalf("TraceParent = %q, want %q", got, tp)
	}
	if id := telemetry.TraceID(ctx); id != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("TraceID = %q", id)
	}
	for _, bad := range []string{"garbage", "00-zz-yy-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		if got := telemetry.TraceParent(telemetry.WithTraceParent(context.Background(), bad)); got != "" {
			t.Errorf("malformed %q continued as %q", bad, got)
		}
	}
}

// collector is an OTLP gRPC trace receiver for tests: it keeps the
// resources of the spans it is sent.
type collector struct {
	coltrace.UnimplementedTraceServiceServer
	mu        sync.Mutex
	resources []map[string]string
}

func (c *collector) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		attrs := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		c.resources = append(c.resources, attrs)
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

// TestSetupFollowsTheOTLPVariables: OTEL_EXPORTER_OTLP_PROTOCOL=grpc
// exports over gRPC, to an endpoint given without a scheme (host:port, a
// collector beside the process); OTEL_SERVICE_NAME names the service, and
// every span says which instance of it made it.
func TestSetupFollowsTheOTLPVariables(t *testing.T) {
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	recv := &collector{}
	coltrace.RegisterTraceServiceServer(srv, recv)
	go srv.Serve(ln)
	defer srv.Stop()

	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_SERVICE_NAME", "shop-orders")
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Process{Service: "ordermesh-orders", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := telemetry.Tracer().Start(context.Background(), "one")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.resources) == 0 {
		t.Fatal("the gRPC collector received no span")
	}
	res := recv.resources[0]
	if res["service.name"] != "shop-orders" || res["service.instance.id"] == "" || res["service.version"] != "test" {
		t.Fatalf("resource %v: want OTEL_SERVICE_NAME's name, an instance id and the version", res)
	}

	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	if _, err := telemetry.Setup(context.Background(), telemetry.Process{Service: "x"}); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Fatalf("an unsupported protocol: %v, want an error naming the variable", err)
	}
}
