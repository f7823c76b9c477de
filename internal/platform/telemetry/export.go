package telemetry

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Process says what the spans of this process are about.
type Process struct {
	// Service is service.name unless OTEL_SERVICE_NAME (or
	// OTEL_RESOURCE_ATTRIBUTES) says otherwise.
	Service string
	Version string
	// Logger receives export failures; nil means slog.Default().
	Logger *slog.Logger
}

// ExportErrors counts failed span exports (the collector unreachable or
// refusing); the log says why.
var ExportErrors = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "ordermesh_trace_export_errors_total",
	Help: "Failed exports of spans to the OTLP endpoint (OTEL_EXPORTER_OTLP_*); the log says why.",
})

// Describe says, for a start banner, where spans go ("" when tracing is
// off).
func Describe() string {
	if !Enabled() || os.Getenv("OTEL_SDK_DISABLED") == "true" {
		return ""
	}
	protocol, endpoint := settings()
	return fmt.Sprintf("OTLP %s to %s", protocol, cmp.Or(endpoint, "the exporter's default endpoint"))
}

// settings are the protocol and endpoint the environment gives for
// traces, signal-specific variables first.
func settings() (protocol, endpoint string) {
	protocol = cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf")
	endpoint = cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	return protocol, endpoint
}

// exporter is the span exporter the environment asks for, per the
// OpenTelemetry specification: OTLP over gRPC when the protocol is grpc,
// else over HTTP (http/protobuf, the default). The exporters read the
// other OTEL_EXPORTER_OTLP_* variables themselves. An endpoint without a
// scheme (127.0.0.1:4318) is plain http or an insecure gRPC connection: a
// collector beside the process, not https.
func exporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	protocol, endpoint := settings()
	bare := endpoint != "" && !strings.Contains(endpoint, "://")
	switch protocol {
	case "grpc":
		var opts []otlptracegrpc.Option
		if bare {
			opts = append(opts, otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, opts...)
	case "http/protobuf":
		var opts []otlptracehttp.Option
		if bare {
			url := "http://" + endpoint
			if os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
				url += "/v1/traces" // the generic endpoint is a base URL
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(url))
		}
		return otlptracehttp.New(ctx, opts...)
	}
	return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want grpc or http/protobuf", protocol)
}

// processResource is the resource of this process's spans: its service
// name, version and a fresh instance id, its host, then whatever
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES say, which win.
func processResource(ctx context.Context, p Process) *resource.Resource {
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(p.Service), semconv.ServiceVersion(p.Version), semconv.ServiceInstanceID(uuid.NewString())),
		resource.WithHost(), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return resource.Default()
	}
	return res
}

// logExportErrors sends the SDK's errors (failed exports) to log and
// counts them.
func logExportErrors(log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		ExportErrors.Inc()
		log.Warn("trace export failed", "err", err)
	}))
}
