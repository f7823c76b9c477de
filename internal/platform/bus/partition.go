package bus

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/ordermesh/ordermesh/internal/platform/every"
)

// A partitioned consumer is one durable consumer per partition, each with
// a JetStream priority group under the pinned_client policy. Every
// instance of the service asks every partition for messages; the broker
// delivers a partition's messages to one of them only (the pinned client)
// and pins another waiting instance once the pinned one has not asked for
// PinnedTTL (it died, lost its connection, or is paused). Which instance
// handles an order's events is decided by the broker: this package keeps
// no lease, membership or clock of its own.
//
// That exclusivity keeps one order's events in order on one instance,
// which saves row-lock waits; it is not what keeps data right. A paused
// instance that wakes with messages in hand handles them beside the
// newly pinned one; every handler serializes on the order's row in its
// own database, and its inbox drops what was already handled.
const (
	// PinnedTTL is how long the broker keeps a partition pinned to an
	// instance that has stopped asking for messages before it pins
	// another: the failover time of a dead instance's partitions.
	PinnedTTL = 6 * time.Second
	// pullExpiry bounds each pull request, so that a live instance asks
	// again (renewing its pin) well within PinnedTTL.
	pullExpiry = 2 * time.Second
	// balanceEvery is how often an instance compares the partitions it is
	// pinned to with its share.
	balanceEvery = 3 * time.Second
	pinGroup     = "ordermesh"
	pinHeader    = "Nats-Pin-Id"
	// presencePrefix starts the core NATS subjects on which the instances
	// of a partitioned consumer count themselves: presence.<consumer>.ping
	// and presence.<consumer>.reply.<id>.
	presencePrefix = "presence."
	// presenceWait is how long a count waits for the instances' answers.
	presenceWait = 250 * time.Millisecond
)

// partitionName is the durable consumer of one partition.
func partitionName(consumer string, p int) string { return fmt.Sprintf("%s-p%02d", consumer, p) }

// partitionView is what one balance round knows of a partition: the pin
// the broker holds for it, and the pin this instance last received
// messages under.
type partitionView struct{ pinned, ours string }

// plan is the balance decision, from plain values: the partitions this
// instance is pinned to now, and those of them it should give back
// because it holds more than its share among instances.
func plan(views []partitionView, instances int) (held, giveBack []int) {
	for p, v := range views {
		if v.pinned != "" && v.pinned == v.ours {
			held = append(held, p)
		}
	}
	instances = max(1, instances)
	share := (len(views) + instances - 1) / instances
	if len(held) > share {
		giveBack = held[share:]
	}
	return held, giveBack
}

// balancer gives back the partitions this instance holds beyond its share.
type balancer struct {
	c        *Consumer
	presence *nats.Subscription
	pins     [Partitions]atomic.Pointer[string] // the pin on each partition's last message

	mu     sync.Mutex
	held   []int            // pinned to this instance at the last round
	moving [Partitions]bool // being given back
	wg     sync.WaitGroup   // give-backs under way
}

// seen notes the pin a message of partition p was delivered under.
func (bl *balancer) seen(p int, m jetstream.Msg) {
	pin := m.Headers().Get(pinHeader)
	if pin == "" {
		return
	}
	if old := bl.pins[p].Load(); old == nil || *old != pin {
		bl.pins[p].Store(&pin)
	}
}

func (bl *balancer) ours(p int) string {
	if pin := bl.pins[p].Load(); pin != nil {
		return *pin
	}
	return ""
}

// run balances every balanceEvery until ctx ends.
func (bl *balancer) run(ctx context.Context) {
	every.After(ctx, balanceEvery, func(ctx context.Context) {
		if err := bl.round(ctx); err != nil && ctx.Err() == nil {
			bl.c.log.Warn("partition balance", "err", err)
		}
	})
}

// round reads each partition's state on the broker and starts giving back
// the partitions beyond this instance's share.
func (bl *balancer) round(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, balanceEvery)
	defer cancel()
	views := make([]partitionView, Partitions)
	for p := range views {
		cons, err := bl.c.bus.js.Consumer(ctx, StreamEvents, partitionName(bl.c.cfg.Name, p))
		if err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
		views[p].ours = bl.ours(p)
		for _, g := range cons.CachedInfo().PriorityGroups {
			if g.Group == pinGroup {
				views[p].pinned = g.PinnedClientID
			}
		}
	}
	instances, err := bl.instances(ctx)
	if err != nil {
		return err
	}
	held, giveBack := plan(views, instances)
	bl.mu.Lock()
	defer bl.mu.Unlock()
	bl.held = held
	for _, p := range giveBack {
		if !bl.moving[p] {
			bl.moving[p] = true
			bl.wg.Add(1)
			go bl.giveBack(ctx, p)
		}
	}
	return nil
}

// answer makes this instance answer its consumer's presence pings.
func (bl *balancer) answer() (*nats.Subscription, error) {
	replies := presencePrefix + bl.c.cfg.Name + ".reply."
	return bl.c.bus.nc.Subscribe(presencePrefix+bl.c.cfg.Name+".ping", func(m *nats.Msg) {
		if strings.HasPrefix(m.Reply, replies) {
			_ = m.Respond(nil)
		}
	})
}

// instances counts the instances of this consumer (this one included)
// that answer a presence ping within presenceWait. The count only shapes
// the balance: a paused instance that does not answer holds no partition
// the broker would not move anyway.
func (bl *balancer) instances(ctx context.Context) (int, error) {
	nc := bl.c.bus.nc
	prefix := presencePrefix + bl.c.cfg.Name
	answers := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(prefix+".reply."+nuid.Next(), answers)
	if err != nil {
		return 0, fmt.Errorf("count instances: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(prefix+".ping", sub.Subject, nil); err != nil {
		return 0, fmt.Errorf("count instances: %w", err)
	}
	n := 0
	wait := time.NewTimer(presenceWait)
	defer wait.Stop()
	for {
		select {
		case <-answers:
			n++
		case <-wait.C:
			return n, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// isMoving says whether partition p is being given back (its subscription
// ends on purpose).
func (bl *balancer) isMoving(p int) bool {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	return bl.moving[p]
}

// giveBack stops asking for partition p's messages, waits until those in
// hand are settled (so the next instance cannot handle a later event of
// an order first), unpins it on the broker, which pins the instance that
// has waited longest, and asks again as a standby.
func (bl *balancer) giveBack(ctx context.Context, p int) {
	defer bl.wg.Done()
	defer func() {
		bl.mu.Lock()
		bl.moving[p] = false
		bl.mu.Unlock()
	}()
	c := bl.c
	i, sub := c.partitionSub(p)
	sub.Drain()
	select {
	case <-sub.Closed():
	case <-time.After(c.cfg.HandlerTimeout): // a drain cut off from the broker
		sub.Stop()
	}
	c.held.waitNone(c.cfg.HandlerTimeout, func(subject string) bool {
		q, ok := partitionOfMessage(subject)
		return ok && q == p
	})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	bl.unpin(ctx, p)
	c.resubscribe(i, c.sources()[i])
	c.log.Debug("partition given back", "partition", p)
}

// unpin asks the broker to pin another instance to partition p, if this
// instance is the one pinned to it: a pin that moved meanwhile is another
// instance's, and unpinning it would take in-hand messages from it.
func (bl *balancer) unpin(ctx context.Context, p int) {
	ours := bl.ours(p)
	bl.pins[p].Store(nil)
	if ours == "" {
		return
	}
	name := partitionName(bl.c.cfg.Name, p)
	cons, err := bl.c.bus.js.Consumer(ctx, StreamEvents, name)
	if err != nil {
		bl.c.log.Warn("unpin partition; the broker moves it after PinnedTTL", "partition", p, "err", err)
		return
	}
	for _, g := range cons.CachedInfo().PriorityGroups {
		if g.Group != pinGroup || g.PinnedClientID != ours {
			continue
		}
		st, err := bl.c.bus.js.Stream(ctx, StreamEvents)
		if err == nil {
			err = st.UnpinConsumer(ctx, name, pinGroup)
		}
		if err != nil {
			bl.c.log.Warn("unpin partition; the broker moves it after PinnedTTL", "partition", p, "err", err)
		}
	}
}

// unpinAll unpins every partition this instance is pinned to, for a
// stopping instance: the others take them at once instead of after
// PinnedTTL.
func (bl *balancer) unpinAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for p := range Partitions {
		bl.unpin(ctx, p)
	}
}
