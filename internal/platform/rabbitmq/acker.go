package rabbitmq

import (
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// acker acknowledges a channel's deliveries, which several workers settle
// out of order, in as few frames as it can: once the deliveries up to a
// tag are all settled, one multiple ack covers those of them to
// acknowledge. A delivery put back by a nack counts as settled once the
// nack is sent. Deliveries settled beyond a gap are acknowledged one by
// one when the gap is a delivery waiting for its delayed nack (up to the
// backoff's 30 s), or once they are a quarter of the prefetch, so that a
// gap never holds the prefetch and stalls the consumer.
type acker struct {
	ch      *amqp.Channel
	limit   int // how many may wait beyond a gap
	mu      sync.Mutex
	next    uint64          // the lowest delivery tag not settled yet
	settled map[uint64]bool // settled tags from next on: true while still to acknowledge
	waiting map[uint64]bool // tags waiting for a delayed nack
	behind  int             // settled tags in settled still to acknowledge
}

func newAcker(ch *amqp.Channel, prefetch int) *acker {
	return &acker{ch: ch, limit: max(1, prefetch/4), next: 1, settled: map[uint64]bool{}, waiting: map[uint64]bool{}}
}

// wait records that d waits for a delayed nack.
func (a *acker) wait(d amqp.Delivery) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.waiting[d.DeliveryTag] = true
	if d.DeliveryTag == a.next {
		a.flushBehind()
	}
}

// settle records the settled deliveries (ack: to acknowledge) and sends
// the acks they allow, if any.
func (a *acker) settle(ack bool, ds ...amqp.Delivery) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, d := range ds {
		a.settled[d.DeliveryTag] = ack
		delete(a.waiting, d.DeliveryTag)
		if ack {
			a.behind++
		}
	}
	var through uint64
	for {
		toAck, ok := a.settled[a.next]
		if !ok {
			break
		}
		delete(a.settled, a.next)
		if toAck {
			through = a.next
			a.behind--
		}
		a.next++
	}
	if through > 0 {
		_ = a.ch.Ack(through, true) // a closed channel has put them back: the inbox drops the redelivery
	}
	if a.behind >= a.limit || a.waiting[a.next] {
		a.flushBehind()
	}
}

// flushBehind acknowledges one by one the settled deliveries beyond the
// gap. The caller holds mu.
func (a *acker) flushBehind() {
	for tag, toAck := range a.settled {
		if toAck {
			_ = a.ch.Ack(tag, false)
			a.settled[tag] = false
		}
	}
	a.behind = 0
}
