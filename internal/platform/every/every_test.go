package every_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/every"
)

func TestRunCallsAtOnceAndStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		every.Run(ctx, time.Millisecond, func(context.Context) {
			if n.Add(1) == 3 {
				cancel()
			}
		})
		close(done)
	}()
	<-done // returns only because the context ended
	if got := n.Load(); got < 3 {
		t.Fatalf("called %d times, want at least 3", got)
	}
}

func TestAfterWaitsAnIntervalFirst(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	every.After(ctx, time.Hour, func(context.Context) { called = true })
	if called {
		t.Fatal("After called f before its first interval")
	}
}
