package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/rabbitmq"
	"github.com/ordermesh/ordermesh/internal/platform/rabbitmq/rabbittest"
)

func dial(t *testing.T) *rabbitmq.Broker {
	t.Helper()
	url := rabbittest.VHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := rabbitmq.Dial(ctx, url, t.Name(), bus.Config{Sources: map[string]string{"thing.made": "test", "thing.gone": "test", "other.thing": "test"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func events(t *testing.T, n int, typ string, subjects ...string) []bus.Event {
	t.Helper()
	var evs []bus.Event
	for i := range n {
		ev, err := bus.NewEvent(typ, "test", subjects[i%len(subjects)], map[string]int{"n": i})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func publish(t *testing.T, b *rabbitmq.Broker, evs []bus.Event) {
	t.Helper()
	if errs := b.PublishAsync(evs).Wait(context.Background()); errs != nil {
		t.Fatalf("publish: %v", errors.Join(errs...))
	}
}

// seen collects what a handler got, and fails events as told.
type seen struct {
	mu    sync.Mutex
	evs   []bus.Event
	tries map[string]int
	fail  func(ev bus.Event, try int) error
	more  chan struct{}
}

func newSeen(fail func(bus.Event, int) error) *seen {
	return &seen{tries: map[string]int{}, fail: fail, more: make(chan struct{}, 1000)}
}

func (s *seen) handle(_ context.Context, evs []bus.Event) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for i, ev := range evs {
		s.tries[ev.ID]++
		var err error
		if s.fail != nil {
			err = s.fail(ev, s.tries[ev.ID])
		}
		if err == nil {
			s.evs = append(s.evs, ev)
		} else {
			if errs == nil {
				errs = make([]error, len(evs))
			}
			errs[i] = err
		}
	}
	s.more <- struct{}{}
	return errs
}

// waitFor waits until the handler has taken n events.
func (s *seen) waitFor(t *testing.T, n int) []bus.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		got := slices.Clone(s.evs)
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-s.more:
		case <-deadline:
			t.Fatalf("handled %d events of %d", len(got), n)
		}
	}
}

func TestEventsReachEachConsumerOnceInEachOrdersOrder(t *testing.T) {
	b := dial(t)
	ctx := context.Background()
	a, other := newSeen(nil), newSeen(nil)
	for _, c := range []struct {
		name string
		s    *seen
	}{{"a", a}, {"b", other}} {
		sub, err := b.Subscribe(ctx, bus.ConsumerConfig{Name: c.name, Types: []string{"thing.made"}, MaxBatch: 16}, c.s.handle)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Stop)
	}
	made := events(t, 200, "thing.made", "o1", "o2", "o3")
	publish(t, b, append(events(t, 5, "other.thing", "o1"), made...))
	for _, s := range []*seen{a, other} {
		got := s.waitFor(t, len(made))
		if len(got) != len(made) {
			t.Fatalf("got %d events, want %d", len(got), len(made))
		}
		// Each order's events in the order published (orders apart are
		// handled at once, by different workers).
		want := map[string][]string{}
		for _, ev := range made {
			want[ev.Subject] = append(want[ev.Subject], ev.ID)
		}
		have := map[string][]string{}
		for _, ev := range got {
			have[ev.Subject] = append(have[ev.Subject], ev.ID)
		}
		for subject, ids := range want {
			if !slices.Equal(have[subject], ids) {
				t.Fatalf("events about %s: got %v, want %v", subject, have[subject], ids)
			}
		}
	}
}

func TestTransientFailuresRetryAndPermanentOnesAreDeadLettered(t *testing.T) {
	b := dial(t)
	ctx := context.Background()
	s := newSeen(func(ev bus.Event, try int) error {
		switch {
		case ev.Subject == "poison":
			return bus.Permanent(errors.New("cannot be handled"))
		case ev.Subject == "flaky" && try < 3:
			return fmt.Errorf("try %d fails", try)
		}
		return nil
	})
	cfg := bus.ConsumerConfig{Name: "c", Types: []string{"thing.made"}, Backoff: func(int) time.Duration { return 10 * time.Millisecond }}
	sub, err := b.Subscribe(ctx, cfg, s.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	evs := events(t, 3, "thing.made", "flaky", "poison", "fine")
	publish(t, b, evs)
	s.waitFor(t, 2)
	s.mu.Lock()
	if tries := s.tries[evs[0].ID]; tries != 3 {
		t.Errorf("the flaky event was tried %d times, want 3", tries)
	}
	s.mu.Unlock()
	var dls []bus.DeadLetter
	for deadline := time.Now().Add(10 * time.Second); len(dls) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if dls, err = b.DeadLetters(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(dls) != 1 || dls[0].EventID != evs[1].ID || dls[0].Consumer != "c" || dls[0].Error == "" {
		t.Fatalf("dead letters: %+v, want the poison event of consumer c with its error", dls)
	}
	// Replayed, it reaches the consumer again (and fails again: a new dead letter).
	if err := b.Replay(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s.mu.Lock()
		tries := s.tries[evs[1].ID]
		s.mu.Unlock()
		if tries == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replayed event was tried %d times, want 2", tries)
		}
	}
	if _, err := b.DeadLetter(ctx, dls[0].ID); !errors.Is(err, bus.ErrDeadLetterNotFound) {
		t.Errorf("the replayed dead letter is still there: %v", err)
	}
}

// TestARetryWaitingItsBackoffDoesNotStallTheRest: an event that failed
// waits its backoff unacknowledged; the events after it must keep flowing,
// though the prefetch (here 4) is far smaller than they are.
func TestARetryWaitingItsBackoffDoesNotStallTheRest(t *testing.T) {
	b := dial(t)
	s := newSeen(func(ev bus.Event, try int) error {
		if ev.Subject == "slow" && try == 1 {
			return errors.New("try later")
		}
		return nil
	})
	cfg := bus.ConsumerConfig{Name: "c", Types: []string{"thing.made"}, MaxBatch: 2, Concurrency: 2,
		Backoff: func(int) time.Duration { return time.Hour }}
	sub, err := b.Subscribe(context.Background(), cfg, s.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	publish(t, b, events(t, 1, "thing.made", "slow"))
	s.waitForTries(t, 1)
	publish(t, b, events(t, 50, "thing.made", "a", "b", "c", "d", "e"))
	s.waitFor(t, 50)
}

// waitForTries waits until the handler has been called n times.
func (s *seen) waitForTries(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		tries := 0
		for _, k := range s.tries {
			tries += k
		}
		s.mu.Unlock()
		if tries >= n {
			return
		}
		select {
		case <-s.more:
		case <-deadline:
			t.Fatalf("%d tries of %d", tries, n)
		}
	}
}
