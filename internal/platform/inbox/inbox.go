// Package inbox makes event consumers idempotent: the pair (consumer, event
// id) is recorded in the same transaction as the handler's writes, so a
// redelivered event is acknowledged and skipped, and an event whose handler
// failed (transaction rolled back) is not marked seen.
package inbox

import (
	"context"
	"embed"
	"errors"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the inbox table's migration set.
func Migrations() sqldb.Migrations { return sqldb.Embedded("inbox", migrations) }

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
// reported while the others commit; so is a batch whose deferred writes
// (sqldb.Tx.Defer) failed at the commit. If the commit itself fails, every
// event reports that error and is retried. h may therefore run more than once for
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
		case errors.Is(err, errSlowPath), errors.Is(err, sqldb.ErrDeferredWrite):
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
			if err == nil {
				err = tx.Flush(ctx) // its deferred writes fail here, as its own
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
