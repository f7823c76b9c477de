// Command gateway-bench is the helper of bench/gateway/run.sh: a fixed
// upstream to proxy to, and a broker for `ordermesh serve gateway` to
// connect to (it needs one for cache invalidation; it stays idle).
//
//	go run ./bench/gateway upstream --addr 127.0.0.1:9201
//	go run ./bench/gateway nats --addr 127.0.0.1:9222 --store DIR
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

// body is a typical order answer, ~400 bytes.
var body = []byte(`{"id":"0193a3f0-5b1e-7c3a-9d2e-1f2a3b4c5d6e","customer_id":"ada","status":"confirmed","items":[{"sku":"MUG","quantity":2,"price_cents":1250}],"total_cents":2500,"currency":"EUR","shipping_address":{"name":"Ada","line1":"1 Main St","city":"Paris","postal_code":"75001","country":"FR"},"version":4,"created_at":"2026-11-21T10:00:00Z","updated_at":"2026-11-21T10:00:01Z"}`)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gateway-bench upstream|nats --addr HOST:PORT")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:9201", "listen address")
	store := fs.String("store", os.TempDir(), "nats: JetStream store directory")
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
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}
