package inbox

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

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

// Prune deletes records older than retention. Keep retention longer than
// the EVENTS stream's history, so a replayed event is still recognised.
func Prune(ctx context.Context, db *sqldb.DB, retention time.Duration) (int64, error) {
	res, err := db.Exec(ctx, "DELETE FROM inbox WHERE received_at_us < ?", time.Now().Add(-retention).UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("prune inbox: %w", err)
	}
	return res.RowsAffected()
}
