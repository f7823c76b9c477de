package bus

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// lostAck is a publish whose acknowledgement never comes, as when the
// stream leader that stored it died before answering.
type lostAck struct{}

func (lostAck) Ok() <-chan *jetstream.PubAck { return nil }
func (lostAck) Err() <-chan error            { return nil }
func (lostAck) Msg() *nats.Msg               { return nil }

var _ jetstream.PubAckFuture = lostAck{}

// TestWaitEndsWhenAnAckIsLost: a batch whose acknowledgement was lost
// fails after its deadline instead of holding its caller (a relay) for
// good, even when the caller's context has no deadline.
func TestWaitEndsWhenAnAckIsLost(t *testing.T) {
	ev, err := NewEvent("order.placed", "test", "o-1", map[string]int{})
	if err != nil {
		t.Fatal(err)
	}
	p := &PendingBatch{events: []Event{ev}, futures: []jetstream.PubAckFuture{lostAck{}}, links: []*link{{subject: "o-1", settled: make(chan struct{})}},
		after: make([]*link, 1), done: make(chan struct{}), wait: 50 * time.Millisecond}
	go p.collect()
	done := make(chan []error, 1)
	go func() { done <- p.Wait(context.Background()) }()
	select {
	case errs := <-done:
		if len(errs) != 1 || errs[0] == nil {
			t.Fatalf("errs = %v, want the lost acknowledgement reported as a failure", errs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wait still blocked 30s after a lost acknowledgement")
	}
}
