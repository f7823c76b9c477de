package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// markSentInOrder follows each batch's acks in order and moves the sent
// mark over the acknowledged prefix; it saves the mark at most every
// SaveEvery while rows flow, soon after they stop, and when the relay
// stops. Failures are kept for sendNext to rewind.
func (r *Relay) markSentInOrder() {
	defer close(r.markDone)
	defer r.saveMark()
	save := time.NewTimer(r.cfg.SaveEvery)
	save.Stop()
	var lastSave time.Time
	failedGen := int64(-1) // batches sent before the rewind that follows a failure
	for {
		select {
		case b, ok := <-r.inflight:
			if !ok {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			errs := b.pending.Wait(ctx)
			cancel()
			upto, err := ackedPrefix(b.ids, errs)
			if b.gen != failedGen && upto > r.acked.Load() {
				r.acked.Store(upto)
			}
			if err != nil {
				// Later batches of this generation must not move the mark
				// past the rows that failed.
				failedGen = b.gen
				r.fail(err)
			}
			r.marking.Done()
			if since := time.Since(lastSave); since >= r.cfg.SaveEvery {
				r.saveMark()
				lastSave = time.Now()
			} else {
				save.Reset(r.cfg.SaveEvery - since)
			}
		case <-save.C:
			r.saveMark()
			lastSave = time.Now()
		}
	}
}

// ackedPrefix returns the highest id of the batch below which every row
// was stored (0 if the first was not), and the first failure.
func ackedPrefix(ids []int64, errs []error) (int64, error) {
	first, err := publishFailure(ids, errs)
	if err == nil {
		return ids[len(ids)-1], nil
	}
	var upto int64
	if first > 0 {
		upto = ids[first-1]
	}
	return upto, err
}

// publishFailure returns the index of a batch's first failed publish and
// an error that counts the failures and wraps the first; nil when every
// row was stored.
func publishFailure(ids []int64, errs []error) (first int, err error) {
	nfailed := 0
	first = -1
	for i, e := range errs {
		if e != nil {
			nfailed++
			if first < 0 {
				first = i
			}
		}
	}
	if nfailed == 0 {
		return -1, nil
	}
	return first, fmt.Errorf("%d of %d outbox events not published: %w", nfailed, len(ids), errs[first])
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

func (r *Relay) fail(err error) {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	if r.failed == nil {
		r.failed = err
	}
}

func (r *Relay) takeFailure() error {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	err := r.failed
	r.failed = nil
	return err
}

// acknowledged waits for a batch's acks and returns the ids of the rows the
// broker stored, and the first failure if some were not.
func acknowledged(ctx context.Context, ids []int64, p *bus.PendingBatch) (sent []int64, failed error) {
	errs := p.Wait(ctx)
	if _, failed = publishFailure(ids, errs); failed == nil {
		return ids, nil
	}
	sent = make([]int64, 0, len(ids))
	for i, err := range errs {
		if err == nil {
			sent = append(sent, ids[i])
		}
	}
	return sent, failed
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
