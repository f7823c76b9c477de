package bus

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestPlan: the balance decision, from what the broker says of each
// partition (its pin), the pins this instance received messages under and
// the instances counted.
func TestPlan(t *testing.T) {
	mine := partitionView{pinned: "x", ours: "x"}
	theirs := partitionView{pinned: "y", ours: "x"}
	for _, tc := range []struct {
		name           string
		views          []partitionView
		instances      int
		held, giveBack []int
	}{
		{"alone with every partition", []partitionView{mine, mine, mine, mine}, 1, []int{0, 1, 2, 3}, nil},
		{"every partition, two instances", []partitionView{mine, mine, mine, mine}, 2, []int{0, 1, 2, 3}, []int{2, 3}},
		{"every partition, three instances", []partitionView{mine, mine, mine, mine}, 3, []int{0, 1, 2, 3}, []int{2, 3}},
		{"its share of two", []partitionView{mine, theirs, mine, theirs}, 2, []int{0, 2}, nil},
		{"one of four instances", []partitionView{theirs, mine, theirs, theirs}, 4, []int{1}, nil},
		{"two of four instances", []partitionView{theirs, mine, mine, theirs}, 4, []int{1, 2}, []int{2}},
		{"more instances than partitions", []partitionView{theirs, mine, theirs, theirs}, 6, []int{1}, nil},
		{"a pin moved away (paused, woke)", []partitionView{theirs, theirs, theirs, theirs}, 2, nil, nil},
		{"pinned, no message seen yet", []partitionView{{pinned: "y"}, mine, mine, mine}, 2, []int{1, 2, 3}, []int{3}},
		{"nothing pinned", []partitionView{{}, {}, {}, {}}, 2, nil, nil},
		{"no answer counted (not even its own)", []partitionView{mine, mine, mine, mine}, 0, []int{0, 1, 2, 3}, nil},
		{"no partitions", nil, 2, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held, giveBack := plan(tc.views, tc.instances)
			if !slices.Equal(held, tc.held) || !slices.Equal(giveBack, tc.giveBack) {
				t.Fatalf("plan(%s, %d) = held %v, give back %v; want %v, %v", fmt.Sprint(tc.views), tc.instances, held, giveBack, tc.held, tc.giveBack)
			}
		})
	}
}

// TestOutcome: what a handler's result means for the message, by the
// deliveries so far (limit 5, backoff of a second per delivery).
func TestOutcome(t *testing.T) {
	backoff := func(n int) time.Duration { return time.Duration(n) * time.Second }
	transient := errors.New("database busy")
	for _, tc := range []struct {
		name      string
		err       error
		delivered int
		want      settlement
		delay     time.Duration
	}{
		{"handled", nil, 1, ack, 0},
		{"handled on its last delivery", nil, 5, ack, 0},
		{"transient, first delivery", transient, 1, retry, time.Second},
		{"transient, fourth delivery", transient, 4, retry, 4 * time.Second},
		{"transient, last delivery", transient, 5, deadLetter, 0},
		{"transient, past the limit", transient, 9, deadLetter, 0},
		{"permanent, first delivery", Permanent(transient), 1, deadLetter, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := outcome(tc.err, tc.delivered, 5, backoff)
			if v.act != tc.want || v.delay != tc.delay || (v.act == deadLetter) != (v.cause != nil) {
				t.Fatalf("outcome = %+v; want %v after %s", v, tc.want, tc.delay)
			}
			if v.act == deadLetter && !errors.Is(v.cause, transient) {
				t.Fatalf("the dead letter's cause %v does not carry the handler's error", v.cause)
			}
		})
	}
}

// TestHeldOlder: the messages reported in progress are those received
// before the cutoff, by the times given, with no clock involved.
func TestHeldOlder(t *testing.T) {
	h := held{since: map[jetstream.Msg]time.Time{}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	old, fresh := &fakeMsg{subject: "old"}, &fakeMsg{subject: "fresh"}
	h.add(old, t0)
	h.add(fresh, t0.Add(10*time.Second))
	got := h.older(t0.Add(5 * time.Second))
	if len(got) != 1 || got[0] != jetstream.Msg(old) {
		t.Fatalf("older = %v; want only the message received first", got)
	}
	h.remove(old)
	if got := h.older(t0.Add(time.Minute)); len(got) != 1 || got[0] != jetstream.Msg(fresh) {
		t.Fatalf("older after removing it = %v; want only the other", got)
	}
}

// fakeMsg is a message as held sees it: a map key with a subject.
type fakeMsg struct {
	jetstream.Msg
	subject string
}

func (m *fakeMsg) Subject() string { return m.subject }

// TestConsumerReplicasApplyToTheEventStreamOnly: --consumer-replicas sets
// the replicas of the EVENTS stream's durable consumers (each partition's
// too) and leaves the REPLAY stream's to follow their stream, which the
// broker requires of an interest stream.
func TestConsumerReplicasApplyToTheEventStreamOnly(t *testing.T) {
	for _, replicas := range []int{0, 1} {
		c := &Consumer{bus: &Bus{cfg: Config{ConsumerReplicas: replicas}}, cfg: ConsumerConfig{Name: "orders-saga"}}
		for _, src := range []source{
			{stream: StreamEvents, name: "orders-saga", partition: -1},
			{stream: StreamEvents, name: "orders-saga-p01", partition: 1},
			{stream: StreamReplay, name: "orders-saga-replay", partition: -1},
		} {
			want := replicas
			if src.stream == StreamReplay {
				want = 0
			}
			if got := c.durable(src).Replicas; got != want {
				t.Errorf("--consumer-replicas %d: %s on %s has replicas %d, want %d", replicas, src.name, src.stream, got, want)
			}
		}
	}
}
