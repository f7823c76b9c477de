// Package inbox makes event consumers idempotent: the pair (consumer, event
// id) is recorded in the same transaction as the handler's writes, so a
// redelivered event is acknowledged and skipped, and an event whose handler
// failed (transaction rolled back) is not marked seen.
package inbox

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the inbox table's migration set.
func Migrations() sqldb.Migrations { return sqldb.Embedded("inbox", migrations) }

// Seen records that consumer processed eventID in tx and reports whether
// it had already been recorded (a duplicate delivery).
func Seen(ctx context.Context, tx *sqldb.Tx, consumer, eventID string) (bool, error) {
	res, err := tx.Exec(ctx,
		"INSERT INTO inbox (consumer, event_id, received_at_us) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
		consumer, eventID, tx.Now().UnixMicro())
	if err != nil {
		return false, fmt.Errorf("inbox record %s/%s: %w", consumer, eventID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("inbox record %s/%s: %w", consumer, eventID, err)
	}
	return n == 0, nil
}

// TxHandler handles one event inside the transaction that records it.
type TxHandler func(ctx context.Context, tx *sqldb.Tx, ev bus.Event) error

// Handler turns h into a bus.Handler that runs h and the inbox record in
// one transaction on db. A duplicate is skipped without calling h; an error
// from h rolls everything back and is returned unchanged (so Permanent
// errors still dead-letter).
func Handler(db *sqldb.DB, consumer string, h TxHandler) bus.Handler {
	return func(ctx context.Context, ev bus.Event) error {
		return db.InTx(ctx, func(tx *sqldb.Tx) error {
			seen, err := Seen(ctx, tx, consumer, ev.ID)
			if err != nil || seen {
				return err
			}
			return h(ctx, tx, ev)
		})
	}
}

// BatchHandler turns h into a bus.BatchHandler that handles a batch of
// events in one transaction. The fast path records the whole batch in the
// inbox with one statement and runs h for each new event. If any h fails,
// that transaction is rolled back and the batch is run again with a
// savepoint per event, so only the failing events are rolled back and
// reported while the others commit. If the commit itself fails, every event
// reports that error and is retried. h may therefore run more than once for
// an event; it must only write through tx.
//
// A deadlock or serialization failure (sqldb.IsRetryable) is not any one
// event's fault: it aborts the whole transaction, which InTx runs again,
// rather than spending a delivery of the event that met it.
func BatchHandler(db *sqldb.DB, consumer string, h TxHandler, opts ...Option) bus.BatchHandler {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return func(ctx context.Context, evs []bus.Event) []error {
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			fresh, err := seenBatch(ctx, tx, consumer, evs)
			if err != nil {
				return err
			}
			if err := o.lock(ctx, tx, evs); err != nil {
				return err
			}
			for _, ev := range evs {
				if !fresh[ev.ID] {
					continue
				}
				if err := h(ctx, tx, ev); err != nil {
					if sqldb.IsRetryable(err) {
						return err
					}
					return errSlowPath
				}
			}
			return nil
		})
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errSlowPath):
			return eachInSavepoint(ctx, db, consumer, h, o, evs)
		default:
			return bus.FailAll(len(evs), err)
		}
	}
}

var errSlowPath = errors.New("a handler failed; retry the batch event by event")

// Option configures a BatchHandler.
type Option func(*options)

type options struct {
	lockFirst func(ctx context.Context, tx *sqldb.Tx, evs []bus.Event) error
}

func (o options) lock(ctx context.Context, tx *sqldb.Tx, evs []bus.Event) error {
	if o.lockFirst == nil {
		return nil
	}
	return o.lockFirst(ctx, tx, evs)
}

// LockFirst runs lock at the start of every batch transaction, before any
// handler. A consumer whose handlers lock several rows per event uses it
// to lock every row the batch will touch in one global order, so that
// concurrent batches (other instances) never wait on each other in a
// cycle.
func LockFirst(lock func(ctx context.Context, tx *sqldb.Tx, evs []bus.Event) error) Option {
	return func(o *options) { o.lockFirst = lock }
}

// Record records events as processed by consumer in tx, ignoring any
// already recorded. Use it when the caller has filtered duplicates itself.
func Record(ctx context.Context, tx *sqldb.Tx, consumer string, evs []bus.Event) error {
	_, err := seenBatch(ctx, tx, consumer, evs)
	return err
}

// Processed returns which of evs consumer has already recorded, without
// recording anything: for a consumer that must act outside its
// transaction (a call to another system) before it records the events.
func Processed(ctx context.Context, q sqldb.Querier, consumer string, evs []bus.Event) (map[string]bool, error) {
	args := make([]any, 0, len(evs)+1)
	args = append(args, consumer)
	for _, ev := range evs {
		args = append(args, ev.ID)
	}
	rows, err := q.Query(ctx, "SELECT event_id FROM inbox WHERE consumer = ? AND event_id IN ("+sqldb.Placeholders(len(evs))+")", args...)
	if err != nil {
		return nil, fmt.Errorf("inbox lookup for %s: %w", consumer, err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		seen[id] = true
	}
	return seen, rows.Err()
}

// seenBatch records the events in the inbox and returns the ids that were
// not recorded before.
func seenBatch(ctx context.Context, tx *sqldb.Tx, consumer string, evs []bus.Event) (map[string]bool, error) {
	if len(evs) == 1 { // the common case at moderate rates: a plain Exec, no rows to read
		seen, err := Seen(ctx, tx, consumer, evs[0].ID)
		if err != nil {
			return nil, err
		}
		return map[string]bool{evs[0].ID: !seen}, nil
	}
	now := tx.Now().UnixMicro()
	args := make([]any, 0, 3*len(evs))
	var q strings.Builder
	q.WriteString("INSERT INTO inbox (consumer, event_id, received_at_us) VALUES ")
	for i, ev := range evs {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?,?)")
		args = append(args, consumer, ev.ID, now)
	}
	q.WriteString(" ON CONFLICT DO NOTHING RETURNING event_id")
	rows, err := tx.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("inbox record %d events for %s: %w", len(evs), consumer, err)
	}
	defer rows.Close()
	fresh := make(map[string]bool, len(evs))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("inbox record for %s: %w", consumer, err)
		}
		fresh[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("inbox record for %s: %w", consumer, err)
	}
	return fresh, nil
}

// eachInSavepoint handles evs in one transaction with a savepoint per event.
func eachInSavepoint(ctx context.Context, db *sqldb.DB, consumer string, h TxHandler, o options, evs []bus.Event) []error {
	var errs []error
	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		errs = nil
		if err := o.lock(ctx, tx, evs); err != nil {
			return err
		}
		for i, ev := range evs {
			if _, err := tx.Exec(ctx, "SAVEPOINT inbox_event"); err != nil {
				return err
			}
			seen, err := Seen(ctx, tx, consumer, ev.ID)
			if err == nil && !seen {
				err = h(ctx, tx, ev)
			}
			if sqldb.IsRetryable(err) {
				return err // the whole transaction again, see BatchHandler
			}
			if err != nil {
				if errs == nil {
					errs = make([]error, len(evs))
				}
				errs[i] = err
				if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT inbox_event"); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT inbox_event"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return bus.FailAll(len(evs), err)
	}
	return errs
}

// Prune deletes records older than retention. Keep retention longer than
// the EVENTS stream's history, so a replayed event is still recognised.
func Prune(ctx context.Context, db *sqldb.DB, retention time.Duration) (int64, error) {
	res, err := db.Exec(ctx, "DELETE FROM inbox WHERE received_at_us < ?", time.Now().Add(-retention).UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("prune inbox: %w", err)
	}
	return res.RowsAffected()
}
