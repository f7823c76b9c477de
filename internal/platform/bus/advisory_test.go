package bus_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
)

// TestBrokerLimitsDeliveriesAndTheDLQ: the broker stops redelivering an
// event two deliveries after the consumer would have dead-lettered it, and
// the event it gave up on (its max-deliveries advisory) lands in the DLQ
// with the reason; the DLQ itself is limited in age and size, refusing new
// dead letters rather than dropping old ones.
func TestBrokerLimitsDeliveriesAndTheDLQ(t *testing.T) {
	s := bustest.Start(t)
	ctx := context.Background()
	settled := make(chan struct{}, 1)
	c, err := s.Bus.Consume(ctx, bus.ConsumerConfig{Name: "limits-test", Types: []string{"thing.happened"}, MaxDeliver: 3},
		func(context.Context, bus.Event) error {
			select {
			case settled <- struct{}{}:
			default:
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	cons, err := s.Bus.JetStream().Consumer(ctx, bus.StreamEvents, "limits-test")
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Config.MaxDeliver; got != 5 {
		t.Fatalf("the broker's MaxDeliver = %d, want the consumer's 3 + 2", got)
	}
	dlq, err := s.Bus.JetStream().Stream(ctx, bus.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := dlq.CachedInfo().Config; cfg.MaxAge != bus.DLQMaxAge || cfg.MaxBytes != bus.DefaultDLQMaxBytes || cfg.Discard != jetstream.DiscardNew {
		t.Fatalf("DLQ limits: age %s, bytes %d, discard %v; want %s, %d, new", cfg.MaxAge, cfg.MaxBytes, cfg.Discard, bus.DLQMaxAge, bus.DefaultDLQMaxBytes)
	}

	ev := bustest.NewEvent(t, "thing.happened", "o-1", map[string]int{"n": 1})
	publish(t, s.Bus, ev)
	<-settled
	seq, err := s.Bus.LastSequence(ctx, "thing.happened", "o-1")
	if err != nil || seq == 0 {
		t.Fatalf("stored at %d, %v", seq, err)
	}
	// What the broker says when it gives up on a message.
	durable := cons.CachedInfo().Name
	adv, _ := json.Marshal(map[string]any{"type": "io.nats.jetstream.advisory.v1.max_deliver", "stream": bus.StreamEvents,
		"consumer": durable, "stream_seq": seq, "deliveries": 5})
	if err := s.Bus.Conn().Publish("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."+bus.StreamEvents+"."+durable, adv); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, "the event the broker gave up on in the DLQ", func() bool {
		dls, _ := s.Bus.DeadLetters(ctx)
		for _, dl := range dls {
			if dl.EventID == ev.ID && dl.Consumer == "limits-test" && strings.Contains(dl.Error, "MaxDeliver") {
				return true
			}
		}
		return false
	})
}
