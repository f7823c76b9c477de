package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel"

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
	if _, err := telemetry.Setup(context.Background(), "test"); err != nil {
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
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	shutdown, err := telemetry.Setup(context.Background(), "test")
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
