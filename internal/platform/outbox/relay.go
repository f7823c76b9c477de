package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// Publisher sends a batch of events in order without waiting for the
// broker's acknowledgements; Wait on the result collects them. *bus.Bus is
// the real one.
type Publisher interface {
	PublishAsync(events []bus.Event) bus.Pending
}

var _ Publisher = (*bus.Bus)(nil)

// RelayConfig configures a Relay.
type RelayConfig struct {
	Publisher Publisher
	// BatchSize is the most rows published per round. Zero means 1000.
	BatchSize int
	// PollInterval is the fallback when no commit wakes the relay (rows
	// left by a crash, rows written by another process). Zero means 1s.
	PollInterval time.Duration
	// Retention is how long sent rows are kept before pruning. Zero means 1h.
	Retention time.Duration
	// SaveEvery is how often, at most, the relay saves its sent mark on
	// SQLite. A crash re-publishes what was acknowledged since the last
	// save (the broker drops the copies). Zero means 100ms.
	SaveEvery time.Duration
	Logger    *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Relay publishes outbox rows in insertion order, in batches with
// asynchronous acknowledgements, and marks them sent.
//
// On SQLite one relay runs per database, and it pipelines: while the acks
// of one batch are on their way it reads and sends the next, reading
// forward from the last id sent (SQLite's single writer makes ids visible
// in increasing order). A goroutine follows the acks in order and moves a
// high-water mark (every id up to it is stored in the broker), which it
// saves in outbox_cursor at most every SaveEvery, and on shutdown: one
// small write a tenth of a second instead of an UPDATE per batch. If any
// publish failed, the relay waits for the batches in flight, rewinds to
// the mark and backs off.
//
// On PostgreSQL any number of relays may run against one database (one
// per instance). A round claims the oldest unsent batch with one
// statement that locks and marks it, publishes it, waits for the acks and
// commits; a concurrent round waits on those row locks, so rounds run one
// at a time and events reach the broker in id order whichever instance
// relays them.
type Relay struct {
	o   *Outbox
	cfg RelayConfig
	log *slog.Logger

	lastPrune time.Time

	// SQLite pipeline state.
	cursor   int64          // highest id sent; the next read starts after it
	gen      int64          // bumped by each rewind; batches carry it
	acked    atomic.Int64   // every id up to it is acknowledged, in order
	saved    int64          // the mark as last saved (marker goroutine only)
	inflight chan sentBatch // batches sent, waiting for acks, in order
	marking  sync.WaitGroup // batches not yet marked
	failMu   sync.Mutex     // guards failed
	failed   error          // first publish failure since the last rewind
	markDone chan struct{}  // closed when the marker goroutine ends
}

// sentBatch is a batch whose acks the marker waits for.
type sentBatch struct {
	ids     []int64
	gen     int64
	pending bus.Pending
}

// NewRelay returns a relay for o.
func NewRelay(o *Outbox, cfg RelayConfig) *Relay {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = time.Hour
	}
	if cfg.SaveEvery <= 0 {
		cfg.SaveEvery = 100 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Relay{o: o, cfg: cfg, log: log.With("component", "outbox-relay")}
}

// Run relays until ctx is cancelled, then flushes what is pending (for at
// most 10 seconds) and returns. Publish failures are logged and retried
// with backoff; Run only returns an error if the flush fails.
func (r *Relay) Run(ctx context.Context) error {
	if r.o.db.Dialect() != sqldb.Postgres {
		var err error
		if r.saved, err = loadMark(ctx, r.o.db); err != nil {
			if ctx.Err() != nil {
				return nil // stopped before it started: nothing sent, nothing to flush
			}
			return fmt.Errorf("read the outbox's sent mark: %w", err)
		}
		r.cursor = r.saved
		r.acked.Store(r.saved)
		r.inflight = make(chan sentBatch, 2)
		r.markDone = make(chan struct{})
		go r.markSentInOrder()
	}
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	failures := 0
	for {
		_, more, err := r.relayOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return r.flush()
		case err != nil:
			failures++
			wait := min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)
			r.log.Warn("relay round failed; retrying", "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			continue
		case more:
			failures = 0
			continue // more rows are waiting
		}
		failures = 0
		r.prune(ctx)
		select {
		case <-ctx.Done():
		case <-r.o.wake:
		case <-poll.C:
		}
	}
}

// flush publishes what is left after shutdown was requested and waits for
// every batch in flight to be marked.
func (r *Relay) flush() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	for {
		var more bool
		if _, more, err = r.relayOnce(ctx); err != nil || !more {
			break
		}
	}
	if r.inflight != nil {
		close(r.inflight)
		<-r.markDone
		if err == nil {
			err = r.takeFailure()
		}
	}
	if err != nil {
		return fmt.Errorf("flush outbox: %w", err)
	}
	return nil
}

// relayOnce sends one batch and reports how many rows it took, and
// whether more are waiting (then the relay goes on without a wake-up).
func (r *Relay) relayOnce(ctx context.Context) (n int, more bool, err error) {
	if r.o.db.Dialect() == sqldb.Postgres {
		n, err = r.claimPublishMark(ctx)
		return n, n == r.cfg.BatchSize, err
	}
	return r.sendNext(ctx)
}

// claimPublishMark is one PostgreSQL round, three statements: BEGIN, a
// claim that locks and marks a batch (oldest first) and reads it back,
// COMMIT after the broker has acknowledged it. A row the broker refused
// is unmarked before the commit, so the next round sends it again.
//
// The claim's row locks put the rounds of every relay on this outbox in
// one order: another instance's claim waits on the first row this round
// holds, and once it commits skips the rows marked, so a later event of
// an order never reaches the broker before an earlier one.
func (r *Relay) claimPublishMark(ctx context.Context) (n int, err error) {
	var failed error
	err = r.o.db.InTx(ctx, func(tx *sqldb.Tx) error {
		ids, events, err := claimUnsent(ctx, tx, r.cfg.Now(), r.cfg.BatchSize)
		if err != nil || len(ids) == 0 {
			return err
		}
		n = len(ids)
		var sent []int64
		sent, failed = acknowledged(ctx, ids, r.cfg.Publisher.PublishAsync(events))
		if failed == nil {
			return nil
		}
		return unmark(ctx, tx, ids, sent)
	})
	if err != nil {
		return n, err
	}
	return n, failed
}

// sendNext is one SQLite round: read the rows after the cursor on the read
// pool and send them; the marker goroutine settles them. After a failure
// it first waits for the batches in flight and rewinds.
func (r *Relay) sendNext(ctx context.Context) (n int, more bool, err error) {
	if err := r.takeFailure(); err != nil {
		r.marking.Wait()
		r.cursor = r.acked.Load()
		r.gen++
		return 0, false, err
	}
	var ids []int64
	var events []bus.Event
	handed, more := r.o.takeHandedOver(r.cursor, r.cfg.BatchSize)
	if len(handed) > 0 {
		ids, events = make([]int64, len(handed)), make([]bus.Event, len(handed))
		for i, h := range handed {
			ids[i], events[i] = h.id, h.ev
		}
	} else {
		// Every row handed over before this read was committed before it.
		drops := r.o.drops()
		var err error
		if ids, events, err = rowsAfter(ctx, r.o.db, r.cursor, r.cfg.BatchSize); err != nil {
			return 0, false, err
		}
		if more = len(ids) == r.cfg.BatchSize; !more {
			r.o.readPast(drops) // the table is read to its end
		}
		if len(ids) == 0 {
			return 0, false, nil
		}
	}
	r.cursor = ids[len(ids)-1]
	r.marking.Add(1)
	r.inflight <- sentBatch{ids: ids, gen: r.gen, pending: r.cfg.Publisher.PublishAsync(events)}
	return len(ids), more || len(ids) == r.cfg.BatchSize, nil
}
