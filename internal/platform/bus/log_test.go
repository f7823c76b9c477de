package bus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEventLogLinesCarryOrderEventAndTrace: a consumer's log line about an
// event (here its dead-lettering) names the event, its order and its trace.
func TestEventLogLinesCarryOrderEventAndTrace(t *testing.T) {
	s := bustest.Start(t)
	var out syncBuffer
	nc, err := s.Embedded.Connect("log-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := bus.New(nc, bus.Config{Logger: slog.New(slog.NewJSONHandler(&out, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Consume(context.Background(), bus.ConsumerConfig{Name: "log-test", Types: []string{"stock.reserved"}},
		func(context.Context, bus.Event) error { return bus.Permanent(errors.New("no such warehouse")) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ev := bustest.NewEvent(t, "stock.reserved", "order-7", map[string]string{"order_id": "order-7"})
	ev.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if err := s.Bus.Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	bustest.Eventually(t, 10*time.Second, "the dead-letter log line", func() bool {
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, `"dead-lettered"`) {
				return json.Unmarshal([]byte(l), &line) == nil
			}
		}
		return false
	})
	for k, want := range map[string]string{"event": ev.ID, "order_id": "order-7", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "type": "stock.reserved"} {
		if line[k] != want {
			t.Errorf("log line %s = %v, want %s (line: %v)", k, line[k], want, line)
		}
	}
}
