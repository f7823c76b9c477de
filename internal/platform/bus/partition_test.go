package bus_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
)

// orderLog checks, across instances, that each subject's events are
// handled one at a time and in the order they were published.
type orderLog struct {
	mu       sync.Mutex
	next     map[string]int    // subject → the sequence number expected next
	busy     map[string]string // subject → the instance handling it now
	handled  map[string]int    // instance → events handled
	problems []string
}

func (l *orderLog) handler(instance string) bus.BatchHandler {
	return func(_ context.Context, evs []bus.Event) []error {
		for _, ev := range evs {
			n, _ := strconv.Atoi(string(ev.Data))
			l.mu.Lock()
			if other, ok := l.busy[ev.Subject]; ok {
				l.problems = append(l.problems, fmt.Sprintf("%s handled on %s and %s at once", ev.Subject, instance, other))
			}
			if n != l.next[ev.Subject] {
				l.problems = append(l.problems, fmt.Sprintf("%s: event %d handled on %s when %d was due", ev.Subject, n, instance, l.next[ev.Subject]))
			}
			l.next[ev.Subject] = n + 1
			l.busy[ev.Subject] = instance
			l.handled[instance]++
			l.mu.Unlock()
			time.Sleep(200 * time.Microsecond) // a little work, so handling overlaps
			l.mu.Lock()
			delete(l.busy, ev.Subject)
			l.mu.Unlock()
		}
		return nil
	}
}

// TestPartitionedConsumersKeepEachOrderOnOneInstance: two instances of a
// partitioned consumer share the partitions (the broker pins each to one;
// the first gives back half), and while events flow and the partitions
// move between them, no subject is ever handled on both at once or out of
// order. When one stops, the other gets every partition.
func TestPartitionedConsumersKeepEachOrderOnOneInstance(t *testing.T) {
	s := bustest.Start(t)
	ctx := context.Background()
	instance := func() (*bus.Bus, func()) {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		b, err := bus.New(nc, bus.Config{Partitioned: true, Logger: bustest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return b, nc.Close
	}
	log := &orderLog{next: map[string]int{}, busy: map[string]string{}, handled: map[string]int{}}
	cfg := bus.ConsumerConfig{Name: "test-partitioned", Types: []string{"item.added"}, Concurrency: 4}
	busA, closeA := instance()
	defer closeA()
	a, err := busA.ConsumeBatch(ctx, cfg, log.handler("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()

	const subjects = 40 // over every partition, with near certainty
	sent := 0
	publish := func() { // one event of every subject
		for i := range subjects {
			if err := s.Bus.Publish(ctx, bustest.NewEvent(t, "item.added", fmt.Sprintf("order-%d", i), sent)); err != nil {
				t.Fatal(err)
			}
		}
		sent++
	}
	// Events flow while a holds the partitions alone, while b joins and
	// while the partitions move.
	bustest.Eventually(t, 20*time.Second, "a alone to be pinned to every partition", func() bool {
		publish()
		return len(a.Partitions()) == bus.Partitions
	})
	busB, closeB := instance()
	defer closeB()
	b, err := busB.ConsumeBatch(ctx, cfg, log.handler("b"))
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 30*time.Second, "the partitions split evenly", func() bool {
		publish()
		return len(a.Partitions()) == bus.Partitions/2 && len(b.Partitions()) == bus.Partitions/2
	})
	total := func() int {
		log.mu.Lock()
		defer log.mu.Unlock()
		return log.handled["a"] + log.handled["b"]
	}
	bustest.Eventually(t, 20*time.Second, "every event handled", func() bool { return total() == subjects*sent })

	a.Stop() // unpins its partitions
	bustest.Eventually(t, 20*time.Second, "b to be pinned to every partition", func() bool {
		publish()
		return len(b.Partitions()) == bus.Partitions
	})
	bustest.Eventually(t, 20*time.Second, "b to handle the events after a left", func() bool { return total() == subjects*sent })
	b.Stop()
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, p := range log.problems {
		t.Error(p)
	}
	if log.handled["a"] == 0 || log.handled["b"] == 0 {
		t.Errorf("handled: %v; want both instances to take part", log.handled)
	}
}

// TestEveryPartitionIsPinnedByTheBroker: a partition's durable consumer
// carries the broker's exclusivity (a priority group under the
// pinned_client policy), and an unpartitioned one does not.
func TestEveryPartitionIsPinnedByTheBroker(t *testing.T) {
	s := bustest.Start(t)
	ctx := context.Background()
	consumeOn(t, s, true, bus.ConsumerConfig{Name: "test-pinned", Types: []string{"item.added"}})
	consumeOn(t, s, true, bus.ConsumerConfig{Name: "test-shared", Types: []string{"item.added"}, Unpartitioned: true})
	for p := range bus.Partitions {
		cons, err := s.Bus.JetStream().Consumer(ctx, bus.StreamEvents, fmt.Sprintf("test-pinned-p%02d", p))
		if err != nil {
			t.Fatal(err)
		}
		cfg := cons.CachedInfo().Config
		if cfg.PriorityPolicy != jetstream.PriorityPolicyPinned || len(cfg.PriorityGroups) != 1 || cfg.PinnedTTL != bus.PinnedTTL {
			t.Fatalf("partition %d: priority policy %v, groups %v, pinned TTL %s; want pinned_client, one group, %s",
				p, cfg.PriorityPolicy, cfg.PriorityGroups, cfg.PinnedTTL, bus.PinnedTTL)
		}
	}
	cons, err := s.Bus.JetStream().Consumer(ctx, bus.StreamEvents, "test-shared")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := cons.CachedInfo().Config; cfg.PriorityPolicy != jetstream.PriorityPolicyNone {
		t.Fatalf("an unpartitioned consumer has priority policy %v", cfg.PriorityPolicy)
	}
}

// TestUnpartitionedConsumerOnAPartitionedBus: a consumer that does not
// need per-order order across instances is one durable consumer on the
// broker, not one per partition, and receives the events of every
// partition.
func TestUnpartitionedConsumerOnAPartitionedBus(t *testing.T) {
	s := bustest.Start(t)
	ctx := context.Background()
	b, c, got := consumeOn(t, s, true, bus.ConsumerConfig{Name: "test-any", Types: []string{"item.added"}, Unpartitioned: true})
	const subjects = 40 // over every partition, with near certainty
	for i := range subjects {
		if err := s.Bus.Publish(ctx, bustest.NewEvent(t, "item.added", fmt.Sprintf("o-%d", i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	bustest.Eventually(t, 10*time.Second, "every event handled", func() bool { return got.count() == subjects })
	stream, err := b.JetStream().Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	lister := stream.ConsumerNames(ctx)
	for name := range lister.Name() {
		names = append(names, name)
	}
	if err := lister.Err(); err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "test-any" {
		t.Fatalf("durable consumers on EVENTS = %v, want only test-any", names)
	}
	if p := c.Partitions(); p != nil {
		t.Fatalf("an unpartitioned consumer holds partitions %v", p)
	}
}

// TestConsumerStateInMemory: with ConsumerMemory the broker keeps the
// durable consumers' state in memory; without it, in files.
func TestConsumerStateInMemory(t *testing.T) {
	s := bustest.Start(t)
	ctx := context.Background()
	for _, memory := range []bool{false, true} {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		b, err := bus.New(nc, bus.Config{ConsumerMemory: memory, Logger: bustest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("test-memory-%t", memory)
		c, err := b.ConsumeBatch(ctx, bus.ConsumerConfig{Name: name, Types: []string{"item.added"}},
			func(context.Context, []bus.Event) []error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		cons, err := b.JetStream().Consumer(ctx, bus.StreamEvents, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := cons.CachedInfo().Config.MemoryStorage; got != memory {
			t.Fatalf("ConsumerMemory %t: the broker keeps the state in memory: %t", memory, got)
		}
	}
}

// TestPartitionOfAMessage: a consumer partition knows its messages by
// their NATS subjects (to wait for those in hand before giving it back),
// whichever of its subject partitions they were published on.
func TestPartitionOfAMessage(t *testing.T) {
	for i := range 200 {
		subject := fmt.Sprintf("order-%d", i)
		ev := bustest.NewEvent(t, "order.placed", subject, 0)
		p, ok := bus.PartitionOfMessage(ev.NATSSubject())
		if !ok || p != bus.PartitionOf(subject) {
			t.Fatalf("%s: the message's partition is %d (%t), its events are consumed in %d", subject, p, ok, bus.PartitionOf(subject))
		}
	}
	if _, ok := bus.PartitionOfMessage("events.order.placed"); ok {
		t.Fatal("an unpartitioned subject has a partition")
	}
}

// TestConsumerOutlivesItsDurable: when the broker deletes a durable
// consumer under a running one (an operator's `nats consumer rm`, a
// botched upgrade), the subscription ends with 409 Consumer Deleted. The
// consumer creates the durable again and goes on: events published after
// it are handled, partitioned or not.
func TestConsumerOutlivesItsDurable(t *testing.T) {
	for _, partitioned := range []bool{false, true} {
		t.Run(fmt.Sprintf("partitioned=%t", partitioned), func(t *testing.T) {
			s := bustest.Start(t)
			ctx := context.Background()
			b, _, got := consumeOn(t, s, partitioned, bus.ConsumerConfig{Name: "test-outlives", Types: []string{"item.added"}})
			publish := func(from, to int) {
				for i := from; i < to; i++ {
					if err := s.Bus.Publish(ctx, bustest.NewEvent(t, "item.added", fmt.Sprintf("o-%d", i), 0)); err != nil {
						t.Fatal(err)
					}
				}
				bustest.Eventually(t, 20*time.Second, fmt.Sprintf("events o-%d…o-%d handled", from, to-1), func() bool { return got.count() == to })
			}
			publish(0, 20)
			stream, err := b.JetStream().Stream(ctx, bus.StreamEvents)
			if err != nil {
				t.Fatal(err)
			}
			lister := stream.ConsumerNames(ctx)
			var names []string
			for name := range lister.Name() {
				names = append(names, name)
			}
			for _, name := range names {
				if err := stream.DeleteConsumer(ctx, name); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("deleted the durable consumers %v", names)
			publish(20, 40)
		})
	}
}

// seen collects the subjects of the events a test consumer handled.
type seen struct {
	mu       sync.Mutex
	subjects map[string]bool
}

func (s *seen) handle(_ context.Context, evs []bus.Event) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range evs {
		s.subjects[ev.Subject] = true
	}
	return nil
}

func (s *seen) has(subject string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subjects[subject]
}

func (s *seen) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subjects)
}

// consumeOn starts a consumer of cfg, on a connection of its own to srv,
// until the test ends.
func consumeOn(t *testing.T, srv *bustest.Server, partitioned bool, cfg bus.ConsumerConfig) (*bus.Bus, *bus.Consumer, *seen) {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.Config{Partitioned: partitioned, Logger: bustest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	got := &seen{subjects: map[string]bool{}}
	c, err := b.ConsumeBatch(context.Background(), cfg, got.handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return b, c, got
}
