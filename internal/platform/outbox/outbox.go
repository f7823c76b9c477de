// Package outbox implements the transactional outbox: events are written in
// the same SQL transaction as the state change they describe, and a Relay
// publishes them to the broker after the commit. Nothing is published
// before its transaction commits, and nothing committed is lost: a crash
// between publish and "mark sent" re-publishes the row, and the broker drops
// the copy because Nats-Msg-Id = event id.
package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the outbox table's migration set.
func Migrations() sqldb.Migrations { return sqldb.Embedded("outbox", migrations) }

// Outbox writes events into a service's database and wakes the relay of
// this process when a transaction that wrote some commits.
//
// On SQLite the commit also hands the rows it wrote to the relay, in
// commit order, so the relay need not read back what was just written. The
// database stays the record: the relay reads it whenever what it was
// handed does not continue from the last row it sent (at start, after a
// failure, when rows were written by another process or more than
// maxHandedOver piled up).
type Outbox struct {
	db   *sqldb.DB
	wake chan struct{}

	mu        sync.Mutex
	handedOff []handedRow // committed rows, ascending ids
	// dropped counts handovers refused because handedOff was full; those
	// rows are only in the table. caughtUp is the count the relay has read
	// the table past: while they differ, the relay must keep reading.
	dropped, caughtUp uint64
}

// handedRow is a committed outbox row handed to the relay.
type handedRow struct {
	id int64
	ev bus.Event
}

// maxHandedOver bounds the rows kept for a relay that is behind or absent.
const maxHandedOver = 10_000

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
	if tx.Dialect() == sqldb.Postgres {
		if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("outbox add %d events: %w", len(events), err)
		}
		tx.OnCommit(o.Wake)
		return nil
	}
	q.WriteString(" RETURNING id")
	rows, err := o.insertReturning(ctx, tx, q.String(), args, events)
	if err != nil {
		return fmt.Errorf("outbox add %d events: %w", len(events), err)
	}
	tx.OnCommitInOrder(func() { o.handOver(rows) })
	return nil
}

// insertReturning runs the insert and pairs each event with its row id.
func (o *Outbox) insertReturning(ctx context.Context, tx *sqldb.Tx, q string, args []any, events []bus.Event) ([]handedRow, error) {
	if len(events) == 1 { // the common case: a plain Exec, no rows to read
		res, err := tx.Exec(ctx, strings.TrimSuffix(q, " RETURNING id"), args...)
		if err != nil {
			return nil, err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return nil, err
		}
		return []handedRow{{id: id, ev: asStored(events[0])}}, nil
	}
	res, err := tx.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	rows := make([]handedRow, 0, len(events))
	for res.Next() {
		var id int64
		if err := res.Scan(&id); err != nil {
			return nil, err
		}
		rows = append(rows, handedRow{id: id})
	}
	if err := res.Err(); err != nil {
		return nil, err
	}
	if len(rows) != len(events) {
		return nil, fmt.Errorf("inserted %d rows for %d events", len(rows), len(events))
	}
	// RETURNING gives no order guarantee; ids of one statement ascend
	// in the order of its VALUES.
	slices.SortFunc(rows, func(a, b handedRow) int { return cmp.Compare(a.id, b.id) })
	for i := range rows {
		rows[i].ev = asStored(events[i])
	}
	return rows, nil
}

// asStored is ev as the relay would read it back from its row.
func asStored(ev bus.Event) bus.Event {
	ev.Time = time.UnixMicro(ev.Time.UnixMicro()).UTC()
	return ev
}

// handOver gives committed rows to the relay and wakes it. It runs in
// commit order (sqldb's OnCommitInOrder).
func (o *Outbox) handOver(rows []handedRow) {
	o.mu.Lock()
	if len(o.handedOff)+len(rows) <= maxHandedOver {
		o.handedOff = append(o.handedOff, rows...)
	} else {
		o.dropped++ // the relay will find them in the database
	}
	o.mu.Unlock()
	o.Wake()
}

// takeHandedOver returns up to max handed rows that continue from the row
// after, or nothing if the next one was not handed over; rows up to after
// are dropped. more reports rows committed beyond those taken that the
// relay must not wait for a wake-up to send: handed rows after a gap, or
// rows that were never handed over because the buffer was full.
func (o *Outbox) takeHandedOver(after int64, max int) (took []handedRow, more bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := 0
	for i < len(o.handedOff) && o.handedOff[i].id <= after {
		i++
	}
	rest := o.handedOff[i:]
	n := 0
	for n < len(rest) && n < max && rest[n].id == after+int64(n)+1 {
		n++
	}
	more = n < len(rest) || o.dropped != o.caughtUp
	if n == 0 {
		o.handedOff = slices.Clone(rest)
		return nil, more
	}
	took = slices.Clone(rest[:n])
	o.handedOff = slices.Clone(rest[n:])
	return took, more
}

// drops is how many handovers were refused so far.
func (o *Outbox) drops() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}

// readPast records that the relay read the table to its end after the
// first d refused handovers, so their rows are sent.
func (o *Outbox) readPast(d uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.caughtUp = max(o.caughtUp, d)
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

// OldestUnsent returns how long the oldest row not yet marked sent has
// waited (zero when none): the relay's lag, which grows without bound
// when it cannot publish. On SQLite it includes up to SaveEvery of the
// lazily saved mark.
func (o *Outbox) OldestUnsent(ctx context.Context, now time.Time) (time.Duration, error) {
	q := "SELECT time_us FROM outbox WHERE sent_at_us IS NULL ORDER BY id LIMIT 1"
	if o.db.Dialect() != sqldb.Postgres {
		q = "SELECT time_us FROM outbox WHERE id > (SELECT upto FROM outbox_cursor) ORDER BY id LIMIT 1"
	}
	var us int64
	err := o.db.QueryRow(ctx, q).Scan(&us)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("oldest unsent outbox row: %w", err)
	}
	return max(0, now.Sub(time.UnixMicro(us))), nil
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
		tx.OnCommit(func() { observeStep(cause, ev) })
	}
	// The emission's span is a child of the cause's handling (whose
	// traceparent the cause carries), else of ctx's span (a request); the
	// event carries it on, so its consumers' spans become its children.
	sctx, span := telemetry.StartEvent(ctx, "emit "+typ, trace.SpanKindProducer, ev.TraceParent,
		telemetry.AttrEventID.String(ev.ID), telemetry.AttrEventType.String(typ), telemetry.AttrOrderID.String(subject),
		telemetry.AttrService.String(strings.TrimPrefix(source, "ordermesh/")))
	if tp := telemetry.TraceParent(sctx); tp != "" {
		ev.TraceParent = tp
	}
	span.End()
	return o.Add(ctx, tx, ev)
}

// WaitPublished waits until every row committed before the call is stored
// in the broker, so a caller can answer "done" only once other services
// can see the events (read-your-writes across services). It polls the
// relay's progress every 10ms until ctx ends. Errors: ctx's.
func (o *Outbox) WaitPublished(ctx context.Context) error {
	var last sql.NullInt64
	if err := o.db.QueryRow(ctx, "SELECT MAX(id) FROM outbox").Scan(&last); err != nil || !last.Valid {
		return err
	}
	done := "SELECT upto >= ? FROM outbox_cursor"
	if o.db.Dialect() == sqldb.Postgres {
		done = "SELECT NOT EXISTS (SELECT 1 FROM outbox WHERE sent_at_us IS NULL AND id <= ?)"
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var ok bool
		if err := o.db.QueryRow(ctx, done, last.Int64).Scan(&ok); err != nil {
			return fmt.Errorf("outbox progress: %w", err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
