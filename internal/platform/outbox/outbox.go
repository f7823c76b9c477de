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
