// Package inbox makes event consumers idempotent: the pair (consumer, event
// id) is recorded in the same transaction as the handler's writes, so a
// redelivered event is acknowledged and skipped, and an event whose handler
// failed (transaction rolled back) is not marked seen.
package inbox

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the inbox table's migration set.
func Migrations() sqldb.Migrations {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sqldb.Migrations{Component: "inbox", FS: sub}
}

// Seen records that consumer processed eventID in tx and reports whether
// it had already been recorded (a duplicate delivery).
func Seen(ctx context.Context, tx *sqldb.Tx, consumer, eventID string) (bool, error) {
	res, err := tx.Exec(ctx,
		"INSERT INTO inbox (consumer, event_id, received_at_us) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
		consumer, eventID, time.Now().UnixMicro())
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

// Prune deletes records older than retention. Keep retention longer than
// the EVENTS stream's history, so a replayed event is still recognised.
func Prune(ctx context.Context, db *sqldb.DB, retention time.Duration) (int64, error) {
	res, err := db.Exec(ctx, "DELETE FROM inbox WHERE received_at_us < ?", time.Now().Add(-retention).UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("prune inbox: %w", err)
	}
	return res.RowsAffected()
}
