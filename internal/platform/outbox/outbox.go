// Package outbox implements the transactional outbox: events are written in
// the same SQL transaction as the state change they describe, and a Relay
// publishes them to the broker after the commit. Nothing is published
// before its transaction commits, and nothing committed is lost: a crash
// between publish and "mark sent" re-publishes the row, and the broker drops
// the copy because Nats-Msg-Id = event id.
package outbox

import (
	"context"
	"embed"
	"fmt"
	"strings"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the outbox table's migration set.
func Migrations() sqldb.Migrations { return sqldb.Embedded("outbox", migrations) }

// Outbox writes events into a service's database and wakes the relay of
// this process when a transaction that wrote some commits.
type Outbox struct {
	db   *sqldb.DB
	wake chan struct{}
}

// New returns the outbox of db.
func New(db *sqldb.DB) *Outbox {
	return &Outbox{db: db, wake: make(chan struct{}, 1)}
}

// Add stores events in tx. They are published only if tx commits; the
// commit wakes the relay at once.
func (o *Outbox) Add(ctx context.Context, tx *sqldb.Tx, events ...bus.Event) error {
	if len(events) == 0 {
		return nil
	}
	const cols = 9
	var q strings.Builder
	q.WriteString("INSERT INTO outbox (event_id, type, source, subject, time_us, traceparent, correlation_id, causation_id, data) VALUES ")
	args := make([]any, 0, cols*len(events))
	for i, ev := range events {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(" + sqldb.Placeholders(cols) + ")")
		args = append(args, ev.ID, ev.Type, ev.Source, ev.Subject, ev.Time.UnixMicro(),
			ev.TraceParent, ev.CorrelationID, ev.CausationID, []byte(ev.Data))
	}
	if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
		return fmt.Errorf("outbox add %d events: %w", len(events), err)
	}
	tx.OnCommit(o.Wake)
	return nil
}

// Wake asks the relay to look for new rows now. It never blocks.
func (o *Outbox) Wake() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Pending counts rows not yet marked sent. On SQLite the relay saves its
// mark a few times a second, so a row stays pending for up to that long
// after the broker has it.
func (o *Outbox) Pending(ctx context.Context) (int, error) {
	q := "SELECT COUNT(*) FROM outbox WHERE sent_at_us IS NULL"
	if o.db.Dialect() != sqldb.Postgres {
		q = "SELECT COUNT(*) FROM outbox WHERE id > (SELECT upto FROM outbox_cursor)"
	}
	var n int
	if err := o.db.QueryRow(ctx, q).Scan(&n); err != nil {
		return 0, fmt.Errorf("count pending outbox rows: %w", err)
	}
	return n, nil
}

// Emit adds one event of type typ about subject, from source, with data
// encoded as JSON, to tx. When cause is not nil the new event continues its
// correlation and trace and names it as its cause.
func (o *Outbox) Emit(ctx context.Context, tx *sqldb.Tx, source, typ, subject string, data any, cause *bus.Event) error {
	ev, err := bus.NewEvent(typ, source, subject, data)
	if err != nil {
		return err
	}
	if cause != nil {
		ev = ev.CausedBy(*cause)
	}
	return o.Add(ctx, tx, ev)
}
