package bus

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// queue is one worker's inbox of received messages. Pushing never blocks,
// so the broker client's delivery callback always drains, and every
// received message is held (and kept alive, see held) until it is settled.
// The broker's MaxAckPending bounds its length.
type queue struct {
	mu     sync.Mutex
	msgs   []jetstream.Msg
	closed bool
	ready  chan struct{} // signalled (capacity 1) after a push or close
}

func newQueue() *queue { return &queue{ready: make(chan struct{}, 1)} }

func (q *queue) push(m jetstream.Msg) {
	q.mu.Lock()
	q.msgs = append(q.msgs, m)
	q.mu.Unlock()
	q.signal()
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// takeReady appends up to max-len(batch) waiting messages to batch without
// waiting, and reports whether the queue is closed and empty.
func (q *queue) takeReady(batch []jetstream.Msg, max int) ([]jetstream.Msg, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(max-len(batch), len(q.msgs))
	batch = append(batch, q.msgs[:n]...)
	clear(q.msgs[:n])
	q.msgs = q.msgs[n:]
	if len(q.msgs) == 0 {
		q.msgs = q.msgs[:0:0] // let the drained backing array go
	}
	return batch, q.closed && len(q.msgs) == 0
}

// take waits for at least one message, then returns those waiting (up to
// max), and, with linger, what else arrives within linger. It returns an
// empty batch once the queue is closed and drained.
func (q *queue) take(batch []jetstream.Msg, max int, linger time.Duration) []jetstream.Msg {
	for {
		var done bool
		batch, done = q.takeReady(batch, max)
		if len(batch) > 0 || done {
			break
		}
		<-q.ready
	}
	if linger <= 0 || len(batch) == 0 || len(batch) >= max {
		return batch
	}
	timer := time.NewTimer(linger)
	defer timer.Stop()
	for len(batch) < max {
		select {
		case <-q.ready:
			var done bool
			if batch, done = q.takeReady(batch, max); done {
				return batch
			}
		case <-timer.C:
			batch, _ = q.takeReady(batch, max)
			return batch
		}
	}
	return batch
}

// held are the messages received and not yet settled, with when each
// arrived. Those held longer than a third of the AckWait are reported to
// the broker as in progress, so a slow handler (or a long queue behind
// one) keeps its deliveries, while the deliveries of an instance that
// died come back to the others after one short AckWait.
type held struct {
	mu      sync.Mutex
	since   map[jetstream.Msg]time.Time
	removed chan struct{} // closed at the next removal, for waitNone
}

// add holds m, received at.
func (h *held) add(m jetstream.Msg, at time.Time) {
	h.mu.Lock()
	h.since[m] = at
	h.mu.Unlock()
}

func (h *held) remove(m jetstream.Msg) {
	h.mu.Lock()
	delete(h.since, m)
	if h.removed != nil {
		close(h.removed)
		h.removed = nil
	}
	h.mu.Unlock()
}

// older returns the messages received before cutoff.
func (h *held) older(cutoff time.Time) []jetstream.Msg {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []jetstream.Msg
	for m, t := range h.since {
		if t.Before(cutoff) {
			out = append(out, m)
		}
	}
	return out
}

// waitNone returns once no held message's subject satisfies match, or
// after d.
func (h *held) waitNone(d time.Duration, match func(subject string) bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		found := false
		for m := range h.since {
			if found = match(m.Subject()); found {
				break
			}
		}
		if !found {
			h.mu.Unlock()
			return
		}
		if h.removed == nil {
			h.removed = make(chan struct{})
		}
		removed := h.removed
		h.mu.Unlock()
		select {
		case <-removed:
		case <-deadline.C:
			return
		}
	}
}
