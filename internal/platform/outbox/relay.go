package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// Publisher publishes a batch of events and reports each one's outcome
// (errs nil when all succeeded). *bus.Bus is the real one.
type Publisher interface {
	PublishBatch(ctx context.Context, events []bus.Event) (errs []error)
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
	Logger    *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Relay publishes outbox rows in insertion order, in batches with
// asynchronous acknowledgements, and marks them sent in one statement per
// batch. On SQLite one relay runs per database. On PostgreSQL any number of
// relays may run against one database: each claims its batch with
// FOR UPDATE SKIP LOCKED, so no row is published by two relays at once.
type Relay struct {
	o         *Outbox
	cfg       RelayConfig
	log       *slog.Logger
	lastPrune time.Time
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
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	failures := 0
	for {
		n, err := r.relayOnce(ctx)
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
		case n == r.cfg.BatchSize:
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

// flush publishes what is left after shutdown was requested.
func (r *Relay) flush() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		n, err := r.relayOnce(ctx)
		if err != nil {
			return fmt.Errorf("flush outbox: %w", err)
		}
		if n < r.cfg.BatchSize {
			return nil
		}
	}
}

// relayOnce publishes one batch and reports how many rows it took. Rows
// the broker did not acknowledge stay unsent; the error then says why.
func (r *Relay) relayOnce(ctx context.Context) (n int, err error) {
	var failed error
	if r.o.db.Dialect() == sqldb.Postgres {
		err = r.o.db.InTx(ctx, func(tx *sqldb.Tx) error {
			rows, err := tx.Query(ctx, selectUnsent+" FOR UPDATE SKIP LOCKED", r.cfg.BatchSize)
			if err != nil {
				return err
			}
			ids, events, err := scanRows(rows)
			if err != nil {
				return err
			}
			n = len(ids)
			var sent []int64
			sent, failed = r.publish(ctx, ids, events)
			return r.markSent(ctx, tx, sent)
		})
	} else {
		// SQLite: read on the read pool and publish outside any transaction,
		// so the single writer stays free while the batch is in flight; only
		// the "mark sent" statement takes the write lock.
		var rows *sql.Rows
		if rows, err = r.o.db.Query(ctx, selectUnsent, r.cfg.BatchSize); err != nil {
			return 0, err
		}
		ids, events, err := scanRows(rows)
		if err != nil || len(ids) == 0 {
			return 0, err
		}
		n = len(ids)
		var sent []int64
		sent, failed = r.publish(ctx, ids, events)
		err = r.o.db.InTx(ctx, func(tx *sqldb.Tx) error { return r.markSent(ctx, tx, sent) })
	}
	if err != nil {
		return n, err
	}
	return n, failed
}

const selectUnsent = `SELECT id, event_id, type, source, subject, time_us, traceparent, correlation_id, causation_id, data
FROM outbox WHERE sent_at_us IS NULL ORDER BY id LIMIT ?`

// publish publishes events and returns the ids of the rows the broker
// acknowledged, and the first failure if some were not.
func (r *Relay) publish(ctx context.Context, ids []int64, events []bus.Event) (sent []int64, failed error) {
	if len(ids) == 0 {
		return nil, nil
	}
	errs := r.cfg.Publisher.PublishBatch(ctx, events)
	if errs == nil {
		return ids, nil
	}
	sent = make([]int64, 0, len(ids))
	nfailed := 0
	for i, err := range errs {
		if err == nil {
			sent = append(sent, ids[i])
			continue
		}
		nfailed++
		if failed == nil {
			failed = err
		}
	}
	return sent, fmt.Errorf("%d of %d outbox events not published: %w", nfailed, len(ids), failed)
}

// markSent stamps the published rows in one statement.
func (r *Relay) markSent(ctx context.Context, tx *sqldb.Tx, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, 0, len(ids)+1)
	args = append(args, r.cfg.Now().UnixMicro())
	for _, id := range ids {
		args = append(args, id)
	}
	q := "UPDATE outbox SET sent_at_us = ? WHERE id IN (" + sqldb.Placeholders(len(ids)) + ")"
	if _, err := tx.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("mark %d outbox rows sent: %w", len(ids), err)
	}
	return nil
}

func scanRows(rows *sql.Rows) ([]int64, []bus.Event, error) {
	defer rows.Close()
	var ids []int64
	var events []bus.Event
	for rows.Next() {
		var (
			id     int64
			ev     bus.Event
			timeUS int64
			data   []byte
		)
		if err := rows.Scan(&id, &ev.ID, &ev.Type, &ev.Source, &ev.Subject, &timeUS,
			&ev.TraceParent, &ev.CorrelationID, &ev.CausationID, &data); err != nil {
			return nil, nil, fmt.Errorf("scan outbox row: %w", err)
		}
		ev.Time = time.UnixMicro(timeUS).UTC()
		ev.Data = data
		ids = append(ids, id)
		events = append(events, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read outbox: %w", err)
	}
	return ids, events, nil
}

// prune deletes sent rows older than the retention, a few thousand at a
// time, at most once a minute.
func (r *Relay) prune(ctx context.Context) {
	now := r.cfg.Now()
	if now.Sub(r.lastPrune) < time.Minute {
		return
	}
	r.lastPrune = now
	cutoff := now.Add(-r.cfg.Retention).UnixMicro()
	for {
		res, err := r.o.db.Exec(ctx, `DELETE FROM outbox WHERE id IN
			(SELECT id FROM outbox WHERE sent_at_us IS NOT NULL AND sent_at_us < ? LIMIT 5000)`, cutoff)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				r.log.Warn("prune outbox", "err", err)
			}
			return
		}
		if n, _ := res.RowsAffected(); n < 5000 {
			return
		}
	}
}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}
