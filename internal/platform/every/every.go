// Package every runs a background task at a fixed interval until its
// context ends: the shape of ordermesh's health checks, prunes, deadline
// sweeps, key refreshes and keep-alives.
package every

import (
	"context"
	"time"
)

// Run calls f at once, then every interval, until ctx ends. A call that
// outlasts the interval delays the next one; ticks are not queued.
func Run(ctx context.Context, interval time.Duration, f func(context.Context)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// After calls f every interval, the first time one interval from now,
// until ctx ends.
func After(ctx context.Context, interval time.Duration, f func(context.Context)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			f(ctx)
		}
	}
}
