package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// The outbox's tables (outbox, and SQLite's outbox_cursor): every query
// of the package, for the services' transactions and for the relay.

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
		// Sent with the commit: nothing reads the rows before it.
		if err := tx.Defer(ctx, q.String(), args...); err != nil {
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

// saveMark writes the sent mark if it moved since it was last saved.
func (r *Relay) saveMark() {
	upto := r.acked.Load()
	if upto <= r.saved {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.o.db.Exec(ctx, "UPDATE outbox_cursor SET upto = ? WHERE one = 1 AND upto < ?", upto, upto); err != nil {
		// Not fatal: the next save covers it; a crash before then
		// re-publishes a little more.
		r.log.Warn("save outbox sent mark", "err", err)
		return
	}
	r.saved = upto
}

// unmark clears the mark of the claimed rows the broker did not
// acknowledge (those in ids but not in sent).
func unmark(ctx context.Context, tx *sqldb.Tx, ids, sent []int64) error {
	var args []any
	for _, id := range ids {
		if !slices.Contains(sent, id) {
			args = append(args, id)
		}
	}
	if len(args) == 0 {
		return nil
	}
	q := "UPDATE outbox SET sent_at_us = NULL WHERE id IN (" + sqldb.Placeholders(len(args)) + ")"
	if _, err := tx.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("unmark %d outbox rows: %w", len(args), err)
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
	q := `DELETE FROM outbox WHERE id IN
		(SELECT id FROM outbox WHERE sent_at_us IS NOT NULL AND sent_at_us < ? LIMIT 5000)`
	arg := cutoff
	if r.o.db.Dialect() != sqldb.Postgres {
		// Ids follow time, so the rows to go are those before the first row
		// young enough to keep (found by a scan that stops there: time_us
		// has no index), and only up to the saved mark.
		keep := int64(math.MaxInt64)
		err := r.o.db.QueryRow(ctx, "SELECT id FROM outbox WHERE time_us >= ? ORDER BY id LIMIT 1", cutoff).Scan(&keep)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			r.log.Warn("prune outbox", "err", err)
			return
		}
		q = `DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
			WHERE id < ? AND id <= (SELECT upto FROM outbox_cursor) ORDER BY id LIMIT 5000)`
		arg = keep
	}
	for {
		res, err := r.o.db.Exec(ctx, q, arg)
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

const (
	outboxColumns = `id, event_id, type, source, subject, time_us, traceparent, correlation_id, causation_id, data`
	// selectAfter reads SQLite's rows after an id (sent is a mark).
	selectAfter = `SELECT ` + outboxColumns + ` FROM outbox WHERE id > ? ORDER BY id LIMIT ?`
	// claimUnsentRows marks PostgreSQL's oldest unsent rows sent and reads
	// them back. FOR UPDATE without SKIP LOCKED: a concurrent claim waits
	// for this one's transaction instead of taking later rows past it.
	// (RETURNING keeps no order, hence the outer SELECT.)
	claimUnsentRows = `WITH claimed AS (UPDATE outbox SET sent_at_us = ? WHERE id IN
		(SELECT id FROM outbox WHERE sent_at_us IS NULL ORDER BY id LIMIT ? FOR UPDATE)
		RETURNING ` + outboxColumns + `) SELECT ` + outboxColumns + ` FROM claimed ORDER BY id`
)

// loadMark is SQLite's sent mark: every row up to it is published.
func loadMark(ctx context.Context, db *sqldb.DB) (int64, error) {
	var upto int64
	err := db.QueryRow(ctx, "SELECT upto FROM outbox_cursor").Scan(&upto)
	return upto, err
}

// claimUnsent locks, marks sent at now and reads up to limit unsent rows,
// oldest first (PostgreSQL).
func claimUnsent(ctx context.Context, tx *sqldb.Tx, now time.Time, limit int) ([]int64, []bus.Event, error) {
	rows, err := tx.Query(ctx, claimUnsentRows, now.UnixMicro(), limit)
	if err != nil {
		return nil, nil, err
	}
	return scanRows(rows)
}

// rowsAfter reads up to limit rows after id, oldest first (SQLite).
func rowsAfter(ctx context.Context, db *sqldb.DB, id int64, limit int) ([]int64, []bus.Event, error) {
	rows, err := db.Query(ctx, selectAfter, id, limit)
	if err != nil {
		return nil, nil, err
	}
	return scanRows(rows)
}
