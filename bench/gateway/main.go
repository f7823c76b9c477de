// Command gateway-bench is the helper of bench/gateway/run.sh: a fixed
// upstream to proxy to, a broker for `ordermesh serve gateway` to connect
// to (it needs one for cache invalidation; it stays idle), and a bare
// `httputil.ReverseProxy` with nothing else in it — the ceiling for any
// gateway built on it, measured beside the real one.
//
//	go run ./bench/gateway upstream --addr 127.0.0.1:9201
//	go run ./bench/gateway nats --addr 127.0.0.1:9222 --store DIR
//	go run ./bench/gateway bare-proxy --addr 127.0.0.1:9204 --upstream http://127.0.0.1:9201
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

// body is a typical order answer, ~400 bytes.
var body = []byte(`{"id":"0193a3f0-5b1e-7c3a-9d2e-1f2a3b4c5d6e","customer_id":"ada","status":"confirmed","items":[{"sku":"MUG","quantity":2,"price_cents":1250}],"total_cents":2500,"currency":"EUR","shipping_address":{"name":"Ada","line1":"1 Main St","city":"Paris","postal_code":"75001","country":"FR"},"version":4,"created_at":"2026-11-21T10:00:00Z","updated_at":"2026-11-21T10:00:01Z"}`)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gateway-bench upstream|nats|bare-proxy --addr HOST:PORT")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:9201", "listen address")
	store := fs.String("store", os.TempDir(), "nats: JetStream store directory")
	upstream := fs.String("upstream", "http://127.0.0.1:9201", "bare-proxy: where to proxy to")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "upstream":
		srv := &http.Server{Addr: *addr, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		})}
		if err := srv.ListenAndServe(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "nats":
		e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: *store, Listen: *addr})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(e.ClientURL())
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		e.Shutdown()
	case "bare-proxy":
		if err := bareProxy(*addr, *upstream); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

// bareProxy serves a plain ReverseProxy to upstream, tuned as the gateway
// is (pooled keep-alive connections, pooled copy buffers) and with no auth,
// limits, balancing, metrics or logging.
func bareProxy(addr, upstream string) error {
	u, err := url.Parse(upstream)
	if err != nil {
		return fmt.Errorf("--upstream: %w", err)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.Transport = &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
	p.BufferPool = &bufferPool{}
	p.ErrorLog = log.New(io.Discard, "", 0) // wrk cancels its in-flight requests when it stops
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second, Handler: p}
	return srv.ListenAndServe()
}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
