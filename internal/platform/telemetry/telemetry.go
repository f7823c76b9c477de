// Package telemetry is ordermesh's tracing: OpenTelemetry spans for HTTP
// requests, event emissions, event handling and outgoing calls, joined
// into one trace per order by the W3C traceparent that every event
// carries (in its outbox row and in its CloudEvents headers).
//
// Spans are exported over OTLP (HTTP, or gRPC with
// OTEL_EXPORTER_OTLP_PROTOCOL=grpc) when the standard variables
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, and
// the other OTEL_* ones the exporters read) are set. Without them the
// tracer provider stays OpenTelemetry's no-op one: no span is recorded or
// exported, and traceparents pass through unchanged.
package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"reflect"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// instrumentation names ordermesh's tracer.
const instrumentation = "github.com/ordermesh/ordermesh"

// Span attributes ordermesh sets on event spans.
const (
	AttrEventID   = attribute.Key("ordermesh.event.id")
	AttrEventType = attribute.Key("ordermesh.event.type")
	AttrOrderID   = attribute.Key("ordermesh.order.id")
	AttrConsumer  = attribute.Key("ordermesh.consumer")
	// AttrService names the service that emitted an event: in `run`, where
	// every service shares the resource ordermesh, it says whose step a
	// span is.
	AttrService = attribute.Key("ordermesh.service")
)

func init() {
	// Propagation works whether or not spans are recorded: a traceparent
	// that arrives in a request or an event is continued.
	otel.SetTextMapPropagator(propagation.TraceContext{})
}

// Enabled reports whether the environment asks for spans to be exported.
func Enabled() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" ||
		os.Getenv("OTEL_TRACES_EXPORTER") == "otlp"
}

// Setup installs an OTLP exporting tracer provider for process p when
// Enabled, and returns the function that flushes and stops it. Otherwise
// it changes nothing and returns a no-op. Errors name the variable to fix.
func Setup(ctx context.Context, p Process) (shutdown func(context.Context) error, err error) {
	if !Enabled() || os.Getenv("OTEL_SDK_DISABLED") == "true" {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := exporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter (check OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_PROTOCOL): %w", err)
	}
	logExportErrors(p.Logger)
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(processResource(ctx, p)))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// Tracer is ordermesh's tracer, from the global provider at each call, so
// that a provider installed later (by Setup or a test) is used.
func Tracer() trace.Tracer { return otel.GetTracerProvider().Tracer(instrumentation) }

// TraceParent is the W3C traceparent of the span in ctx, or "" when ctx
// carries no valid span context.
func TraceParent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// WithTraceParent returns ctx continuing the remote span named by
// traceparent. An empty or malformed traceparent leaves ctx unchanged:
// it may come from a forged event.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// Continue starts span name as a child of the span traceparent names (the
// work it belongs to, such as an order placed earlier), linked to ctx's
// span (what set it going now, such as a customer's request in a trace of
// its own), so that follow-up work stays in its order's trace. Without a
// valid traceparent it is an ordinary child of ctx's span.
func Continue(ctx context.Context, traceparent, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := WithTraceParent(ctx, traceparent)
	opts := []trace.SpanStartOption{trace.WithAttributes(attrs...)}
	if now := trace.SpanContextFromContext(ctx); now.IsValid() && now.TraceID() != trace.SpanContextFromContext(parent).TraceID() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: now}))
	}
	return Tracer().Start(parent, name, opts...)
}

// TraceID is the trace id of the span in ctx, or "" without one; for log
// lines.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// StartEvent starts a span about one event, as a child of the span its
// traceparent names, else of ctx's span.
func StartEvent(ctx context.Context, name string, kind trace.SpanKind, traceparent string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return Tracer().Start(WithTraceParent(ctx, traceparent), name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// Handler wraps h with a server span per request, named by route (the
// method and path when route is nil). Health probes and metrics scrapes
// get none.
func Handler(h http.Handler, route func(*http.Request) string) http.Handler {
	traced := otelhttp.NewHandler(h, "http", otelhttp.WithTracerProvider(globalProvider{}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if route != nil {
				if p := route(r); p != "" {
					return p
				}
			}
			return r.Method + " " + r.URL.Path
		}),
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch r.URL.Path {
			case "/livez", "/readyz", "/metrics":
				return false
			}
			return true
		}))
	// With no tracer provider, otelhttp would make spans no one records.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Tracing() {
			traced.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// untraced is the global tracer provider before anything installs one.
var untraced = otel.GetTracerProvider()

// Tracing reports whether a tracer provider is installed (by Setup, or by
// a test): otherwise spans go nowhere, and handlers and transports skip
// making them. It is checked per use, so one installed later is used.
func Tracing() bool {
	tp := otel.GetTracerProvider()
	return !reflect.TypeOf(tp).Comparable() || tp != untraced
}

// Transport wraps rt with a client span per request and sends the
// traceparent of the caller's span.
func Transport(rt http.RoundTripper) http.RoundTripper {
	// Without a provider, otelhttp takes the one of the caller's span, and
	// a span continued from an event's traceparent has a no-op one.
	traced := otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(globalProvider{}))
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		if Tracing() {
			return traced.RoundTrip(r)
		}
		return rt.RoundTrip(r)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// globalProvider is the global tracer provider at each use, so that one
// installed after a client or handler was built (by Setup or a test) is used.
type globalProvider struct{ embedded.TracerProvider }

func (globalProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return otel.GetTracerProvider().Tracer(name, opts...)
}
