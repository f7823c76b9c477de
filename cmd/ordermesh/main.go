// Command ordermesh runs the ordermesh order pipeline and its tools; see
// `ordermesh --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ordermesh/ordermesh/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
