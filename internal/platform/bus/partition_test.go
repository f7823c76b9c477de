package bus_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/every"
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
// partitioned consumer share the partitions (each ends up with half), and
// while events flow and the partitions move between them, no subject is
// ever handled on both at once or out of order. When one stops, the other
// takes every partition.
func TestPartitionedConsumersKeepEachOrderOnOneInstance(t *testing.T) {
	s := bustest.Start(t)
	ctx := context.Background()
	instance := func(name string) (*bus.Bus, func()) {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		b, err := bus.New(nc, bus.Config{Partitioned: true, Instance: name, Logger: bustest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return b, nc.Close
	}
	log := &orderLog{next: map[string]int{}, busy: map[string]string{}, handled: map[string]int{}}
	cfg := bus.ConsumerConfig{Name: "test-partitioned", Types: []string{"item.added"}, Concurrency: 4}
	busA, closeA := instance("a")
	defer closeA()
	a, err := busA.ConsumeBatch(ctx, cfg, log.handler("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	bustest.Eventually(t, 10*time.Second, "a alone to take every partition", func() bool { return len(a.Partitions()) == bus.Partitions })

	const subjects, perSubject = 40, 30
	published := make(chan struct{})
	go func() { // events flow while b joins and the partitions move
		defer close(published)
		for n := range perSubject {
			for i := range subjects {
				ev := bustest.NewEvent(t, "item.added", fmt.Sprintf("order-%d", i), n)
				if err := s.Bus.Publish(ctx, ev); err != nil {
					t.Error(err)
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	busB, closeB := instance("b")
	defer closeB()
	b, err := busB.ConsumeBatch(ctx, cfg, log.handler("b"))
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 20*time.Second, "the partitions split evenly", func() bool {
		return len(a.Partitions()) == bus.Partitions/2 && len(b.Partitions()) == bus.Partitions/2
	})
	<-published
	// Leases outlive the members' TTL: held partitions are not up for
	// grabs just because nobody rewrote their keys.
	time.Sleep(bus.LeaseTTL + 2*bus.LeaseRenew)
	leases, err := s.Bus.JetStream().KeyValue(ctx, "ordermesh_partitions")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := leases.ListKeysFiltered(ctx, "l.test-partitioned.*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	if n != bus.Partitions {
		t.Fatalf("%d lease keys %s after the last change, want %d", n, bus.LeaseTTL+2*bus.LeaseRenew, bus.Partitions)
	}
	total := func() int {
		log.mu.Lock()
		defer log.mu.Unlock()
		return log.handled["a"] + log.handled["b"]
	}
	bustest.Eventually(t, 20*time.Second, "every event handled", func() bool { return total() == subjects*perSubject })

	a.Stop() // gives its leases back
	bustest.Eventually(t, 20*time.Second, "b to take every partition", func() bool { return len(b.Partitions()) == bus.Partitions })
	for i := range subjects {
		if err := s.Bus.Publish(ctx, bustest.NewEvent(t, "item.added", fmt.Sprintf("order-%d", i), perSubject)); err != nil {
			t.Fatal(err)
		}
	}
	bustest.Eventually(t, 20*time.Second, "b to handle the events after a left", func() bool { return total() == subjects*(perSubject+1) })
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

// TestUnpartitionedConsumerOnAPartitionedBus: a consumer that does not
// need per-order order across instances is one durable consumer on the
// broker, not one per partition, and receives the events of every
// partition.
func TestUnpartitionedConsumerOnAPartitionedBus(t *testing.T) {
	s := bustest.Start(t)
	ctx := context.Background()
	b, c, got := consumeOn(t, s, "a", true, bus.ConsumerConfig{Name: "test-any", Types: []string{"item.added"}, Unpartitioned: true})
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
			b, _, got := consumeOn(t, s, "a", partitioned, bus.ConsumerConfig{Name: "test-outlives", Types: []string{"item.added"}})
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

// TestGivingBackALeaseThatFailsLeavesNoOrphan: when an instance gives a
// partition back and the lease's deletion fails (here its revision moved
// under it, as a lost answer or a timeout would leave it), the lease still
// names that instance, which no longer consumes it, and no other instance
// may take it from a live member. The instance retries the deletion on
// later rounds, so every partition ends up consumed by someone.
func TestGivingBackALeaseThatFailsLeavesNoOrphan(t *testing.T) {
	s := bustest.Start(t)
	ctx := context.Background()
	cfg := bus.ConsumerConfig{Name: "test-orphan", Types: []string{"item.added"}}
	busA, a, _ := consumeOn(t, s, "a", true, cfg)
	bustest.Eventually(t, 10*time.Second, "a alone to take every partition", func() bool { return len(a.Partitions()) == bus.Partitions })
	leases, err := busA.JetStream().KeyValue(ctx, "ordermesh_partitions")
	if err != nil {
		t.Fatal(err)
	}
	for p := range bus.Partitions {
		if _, err := leases.Put(ctx, fmt.Sprintf("l.%s.%d", cfg.Name, p), []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	_, b, _ := consumeOn(t, s, "b", true, cfg)
	bustest.Eventually(t, 20*time.Second, "a and b to hold two partitions each", func() bool {
		return len(a.Partitions()) == bus.Partitions/2 && len(b.Partitions()) == bus.Partitions/2
	})
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

// consumeOn starts a consumer of cfg as instance, on a connection of its
// own to srv, until the test ends.
func consumeOn(t *testing.T, srv *bustest.Server, instance string, partitioned bool, cfg bus.ConsumerConfig) (*bus.Bus, *bus.Consumer, *seen) {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.Config{Partitioned: partitioned, Instance: instance, Logger: bustest.Logger(t)})
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

// TestAnInstanceStopsAPartitionTakenFromIt: the moment a partition's
// lease names another live instance (taken over while this one's
// membership had lapsed, whatever this one believed), this instance stops
// consuming it, without waiting to find out in a round of its own.
func TestAnInstanceStopsAPartitionTakenFromIt(t *testing.T) {
	s := bustest.Start(t)
	ctx := context.Background()
	cfg := bus.ConsumerConfig{Name: "test-taken", Types: []string{"item.added"}}
	busA, a, _ := consumeOn(t, s, "a", true, cfg)
	bustest.Eventually(t, 10*time.Second, "a alone to take every partition", func() bool { return len(a.Partitions()) == bus.Partitions })
	js := busA.JetStream()
	leases, err := js.KeyValue(ctx, "ordermesh_partitions")
	if err != nil {
		t.Fatal(err)
	}
	members, err := js.KeyValue(ctx, "ordermesh_members")
	if err != nil {
		t.Fatal(err)
	}
	// x is a live member (its key renewed here) that takes partition 0.
	alive, stop := context.WithCancel(ctx)
	defer stop()
	go every.After(alive, time.Second, func(context.Context) { members.Put(ctx, "m."+cfg.Name+".x", []byte("x")) })
	if _, err := members.Put(ctx, "m."+cfg.Name+".x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	key := "l." + cfg.Name + ".0"
	e, err := leases.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leases.Update(ctx, key, []byte("x"), e.Revision()); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 5*time.Second, "a to stop consuming partition 0, whose lease names x", func() bool {
		return !slices.Contains(a.Partitions(), 0)
	})
}
