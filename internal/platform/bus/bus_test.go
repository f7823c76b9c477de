package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
)

func fastBackoff(int) time.Duration { return 20 * time.Millisecond }

func publish(t *testing.T, b *bus.Bus, evs ...bus.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := b.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// recorder is a handler that records what it processed.
type recorder struct {
	mu   sync.Mutex
	seen map[string]int
	fail func(ev bus.Event, attempt int) error
}

func (r *recorder) handle(_ context.Context, ev bus.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]int{}
	}
	attempt := r.seen[ev.ID+"#attempts"] + 1
	r.seen[ev.ID+"#attempts"] = attempt
	if r.fail != nil {
		if err := r.fail(ev, attempt); err != nil {
			return err
		}
	}
	r.seen[ev.ID]++
	return nil
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[key]
}

func TestEnvelopeRoundTrip(t *testing.T) {
	cause := bustest.NewEvent(t, "order.placed", "o-1", map[string]int{"n": 1})
	cause.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	ev := bustest.NewEvent(t, "stock.reserved", "o-1", map[string]string{"sku": "A"}).CausedBy(cause)
	msg := ev.Msg()
	if want := "events.stock.reserved." + strconv.Itoa(bus.SubjectPartition("o-1")); msg.Subject != want {
		t.Fatalf("subject = %q", msg.Subject)
	}
	if got := msg.Header.Get("Nats-Msg-Id"); got != ev.ID {
		t.Fatalf("Nats-Msg-Id = %q, want event id %q", got, ev.ID)
	}
	got, err := bus.Decode(msg.Header, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != ev.ID || got.Type != ev.Type || got.Subject != "o-1" || got.CausationID != cause.ID ||
		got.CorrelationID != cause.CorrelationID || got.TraceParent != cause.TraceParent || !got.Time.Equal(ev.Time) {
		t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", got, ev)
	}
}

// TestExtensionsAreCloudEventsAttributes: in the NATS binding every
// CloudEvents attribute, extensions included, is a ce- header (a
// CloudEvents SDK reads nothing else as an extension); events stored
// before the prefix still decode.
func TestExtensionsAreCloudEventsAttributes(t *testing.T) {
	cause := bustest.NewEvent(t, "order.placed", "o-1", map[string]int{"n": 1})
	cause.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	msg := bustest.NewEvent(t, "stock.reserved", "o-1", map[string]int{"n": 2}).CausedBy(cause).Msg()
	for _, ext := range []string{"traceparent", "correlationid", "causationid"} {
		if msg.Header.Get("ce-"+ext) == "" {
			t.Errorf("no ce-%s header", ext)
		}
		if msg.Header.Get(ext) != "" {
			t.Errorf("%s sent without the ce- prefix", ext)
		}
	}
	for k := range msg.Header {
		if lk := strings.ToLower(k); !strings.HasPrefix(lk, "ce-") && lk != "content-type" && lk != "nats-msg-id" {
			t.Errorf("header %s is neither a CloudEvents attribute nor the broker's", k)
		}
	}
	legacy := nats.Header{}
	for k, v := range msg.Header {
		legacy[k] = v
	}
	for _, ext := range []string{"traceparent", "correlationid", "causationid"} {
		legacy.Set(ext, legacy.Get("ce-"+ext))
		legacy.Del("ce-" + ext)
	}
	got, err := bus.Decode(legacy, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.TraceParent != cause.TraceParent || got.CausationID != cause.ID || got.CorrelationID != cause.CorrelationID {
		t.Fatalf("an event stored before the prefix lost its extensions: %+v", got)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := bustest.NewEvent(t, "order.placed", "o-1", map[string]int{"n": 1}).Msg()
	tests := map[string]func(h nats.Header) []byte{
		"NoID":        func(h nats.Header) []byte { h.Del(bus.HeaderID); return good.Data },
		"NoType":      func(h nats.Header) []byte { h.Del(bus.HeaderType); return good.Data },
		"WrongSpec":   func(h nats.Header) []byte { h.Set(bus.HeaderSpecVersion, "0.3"); return good.Data },
		"BadTime":     func(h nats.Header) []byte { h.Set(bus.HeaderTime, "yesterday"); return good.Data },
		"NotJSONData": func(h nats.Header) []byte { return []byte("{not json") },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			h := nats.Header{}
			for k, v := range good.Header {
				h[k] = append([]string(nil), v...)
			}
			data := mutate(h)
			if _, err := bus.Decode(h, data); !errors.Is(err, bus.ErrUndecodable) {
				t.Fatalf("Decode error = %v, want ErrUndecodable", err)
			}
		})
	}
}

func TestPublishDuplicateIsDropped(t *testing.T) {
	s := bustest.Start(t)
	ev := bustest.NewEvent(t, "order.placed", "o-1", map[string]int{"n": 1})
	publish(t, s.Bus, ev, ev)
	if errs := s.Bus.PublishBatch(context.Background(), []bus.Event{ev}); errs != nil {
		t.Fatalf("PublishBatch of a duplicate: %v", errs)
	}
	if got := s.StreamEvents(t, bus.StreamEvents); len(got) != 1 {
		t.Fatalf("EVENTS holds %d copies of one event, want 1", len(got))
	}
}

func TestConsumer(t *testing.T) {
	t.Run("TransientFailureRetried", func(t *testing.T) {
		s := bustest.Start(t)
		r := &recorder{fail: func(_ bus.Event, attempt int) error {
			if attempt <= 2 {
				return errors.New("database briefly unavailable")
			}
			return nil
		}}
		c, err := s.Bus.Consume(context.Background(), bus.ConsumerConfig{
			Name: "test-transient", Types: []string{"order.placed"}, Backoff: fastBackoff,
		}, r.handle)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		ev := bustest.NewEvent(t, "order.placed", "o-1", map[string]int{"n": 1})
		publish(t, s.Bus, ev)
		bustest.Eventually(t, 10*time.Second, "event processed", func() bool { return r.count(ev.ID) == 1 })
		c.Stop()
		if got := r.count(ev.ID + "#attempts"); got != 3 {
			t.Errorf("handler ran %d times, want 3 (two failures, one success)", got)
		}
		if got := r.count(ev.ID); got != 1 {
			t.Errorf("processed %d times, want once", got)
		}
		if dls, _ := s.Bus.DeadLetters(context.Background()); len(dls) != 0 {
			t.Errorf("DLQ holds %d dead letters, want none: %+v", len(dls), dls)
		}
	})

	t.Run("PoisonGoesToDLQ", func(t *testing.T) {
		s := bustest.Start(t)
		r := &recorder{fail: func(ev bus.Event, _ int) error {
			if strings.Contains(string(ev.Data), "reject-me") {
				return bus.Permanent(errors.New("quantity must be positive"))
			}
			return nil
		}}
		c, err := s.Bus.Consume(context.Background(), bus.ConsumerConfig{
			Name: "test-poison", Types: []string{"order.placed"}, Backoff: fastBackoff, Concurrency: 1,
		}, r.handle)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()

		// Undecodable: not a CloudEvent (no ce-* headers, not JSON).
		garbage := &nats.Msg{Subject: "events.order.placed", Data: []byte("\x00garbage"), Header: nats.Header{}}
		if _, err := s.Bus.JetStream().PublishMsg(context.Background(), garbage); err != nil {
			t.Fatal(err)
		}
		rejected := bustest.NewEvent(t, "order.placed", "o-1", map[string]string{"note": "reject-me"})
		after := bustest.NewEvent(t, "order.placed", "o-1", map[string]string{"note": "fine"})
		publish(t, s.Bus, rejected, after)

		bustest.Eventually(t, 10*time.Second, "the message behind the poison to be processed", func() bool { return r.count(after.ID) == 1 })
		var dls []bus.DeadLetter
		bustest.Eventually(t, 10*time.Second, "two dead letters", func() bool {
			dls, err = s.Bus.DeadLetters(context.Background())
			return err == nil && len(dls) == 2
		})
		if !strings.Contains(dls[0].Error, "undecodable") || dls[0].Consumer != "test-poison" ||
			dls[0].Subject != "events.order.placed" || dls[0].StreamSeq != 1 || dls[0].Deliveries != 1 {
			t.Errorf("undecodable dead letter = %+v", dls[0])
		}
		if !strings.Contains(dls[1].Error, "quantity must be positive") || dls[1].EventID != rejected.ID ||
			dls[1].Type != "order.placed" || dls[1].StreamSeq != 2 {
			t.Errorf("rejected dead letter = %+v", dls[1])
		}
		if got := r.count(rejected.ID); got != 0 {
			t.Errorf("rejected event counted as processed %d times", got)
		}
	})

	t.Run("ExhaustedGoesToDLQ", func(t *testing.T) {
		s := bustest.Start(t)
		r := &recorder{fail: func(bus.Event, int) error { return errors.New("provider down") }}
		c, err := s.Bus.Consume(context.Background(), bus.ConsumerConfig{
			Name: "test-exhaust", Types: []string{"order.placed"}, Backoff: fastBackoff, MaxDeliver: 3,
		}, r.handle)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		ev := bustest.NewEvent(t, "order.placed", "o-1", map[string]int{"n": 1})
		publish(t, s.Bus, ev)
		var dls []bus.DeadLetter
		bustest.Eventually(t, 10*time.Second, "a dead letter", func() bool {
			dls, err = s.Bus.DeadLetters(context.Background())
			return err == nil && len(dls) == 1
		})
		if dls[0].Deliveries != 3 || !strings.Contains(dls[0].Error, "provider down") {
			t.Errorf("dead letter = %+v, want 3 deliveries and the last error", dls[0])
		}
		if got := r.count(ev.ID + "#attempts"); got != 3 {
			t.Errorf("handler ran %d times, want 3", got)
		}
	})

	t.Run("CompetingInstancesShareWork", func(t *testing.T) {
		s := bustest.Start(t)
		r := &recorder{}
		for range 3 {
			c, err := s.Bus.Consume(context.Background(), bus.ConsumerConfig{
				Name: "test-shared", Types: []string{"order.placed"},
			}, r.handle)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Stop()
		}
		var evs []bus.Event
		for range 100 {
			evs = append(evs, bustest.NewEvent(t, "order.placed", "o", map[string]int{"n": 1}))
		}
		if errs := s.Bus.PublishBatch(context.Background(), evs); errs != nil {
			t.Fatal(errs)
		}
		bustest.Eventually(t, 10*time.Second, "all events processed", func() bool {
			for _, ev := range evs {
				if r.count(ev.ID) == 0 {
					return false
				}
			}
			return true
		})
		for _, ev := range evs {
			if n := r.count(ev.ID); n != 1 {
				t.Fatalf("event handled %d times by the shared consumer, want once", n)
			}
		}
	})
}

func TestLingeringConsumerBatchesWhatArrivesMeanwhile(t *testing.T) {
	s := bustest.Start(t)
	ctx := context.Background()
	var mu sync.Mutex
	var batches [][]string
	// A linger far longer than the test: the batch is handed on because it
	// is full, not because the wait ended.
	cfg := bus.ConsumerConfig{Name: "test-linger", Types: []string{"item.added"}, Concurrency: 1, MaxBatch: 5, Linger: time.Minute}
	_, err := s.Bus.ConsumeBatch(ctx, cfg, func(_ context.Context, evs []bus.Event) []error {
		ids := make([]string, len(evs))
		for i, ev := range evs {
			ids[i] = ev.ID
		}
		mu.Lock()
		batches = append(batches, ids)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		publish(t, s.Bus, bustest.NewEvent(t, "item.added", fmt.Sprintf("item-%d", i), nil))
	}
	bustest.Eventually(t, 30*time.Second, "a batch handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(batches) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 1 || len(batches[0]) != 5 {
		t.Fatalf("handler got batches of %v events, want one batch of all 5 (the worker lingers for the rest)", lens(batches))
	}
}

func lens(batches [][]string) []int {
	n := make([]int, len(batches))
	for i, b := range batches {
		n[i] = len(b)
	}
	return n
}

// TestAnEarlierFailureHoldsBackItsSubject: when an event cannot be
// stored, the later events about the same subject in flight behind it are
// not sent (ErrEarlierUnsent), so a retry from the first failure stores
// them in their order; events about other subjects are not held back.
func TestAnEarlierFailureHoldsBackItsSubject(t *testing.T) {
	s := bustest.Start(t)
	tooBig := bustest.NewEvent(t, "order.placed", "o-1", map[string]string{"pad": strings.Repeat("x", 2<<20)})
	later := bustest.NewEvent(t, "order.cancelled", "o-1", map[string]int{})
	other := bustest.NewEvent(t, "order.placed", "o-2", map[string]int{})
	errs := s.Bus.PublishBatch(context.Background(), []bus.Event{tooBig, later, other})
	if len(errs) != 3 || errs[0] == nil || !errors.Is(errs[1], bus.ErrEarlierUnsent) || errs[2] != nil {
		t.Fatalf("errs = %v; want the first failed, the second held back, the other subject's stored", errs)
	}
	got := s.StreamEvents(t, bus.StreamEvents)
	if len(got) != 1 || got[0].ID != other.ID {
		t.Fatalf("EVENTS holds %d events, want only o-2's", len(got))
	}
}
