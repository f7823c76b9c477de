package psp

import (
	"context"
	"fmt"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/pspapi"
)

// The simulator's ledger (psp_operations) and its queue of async outcomes
// (psp_notifications): every query of the package.

// find is the operation already recorded for (op, key), or sql.ErrNoRows.
func (s *Server) find(ctx context.Context, tx *sqldb.Tx, op, key string) (pspapi.Operation, error) {
	var o pspapi.Operation
	var at int64
	err := tx.QueryRow(ctx, `SELECT id, op, order_id, amount_cents, currency, outcome, reason, at_us
		FROM psp_operations WHERE op = ? AND idem_key = ?`, op, key).
		Scan(&o.ID, &o.Op, &o.OrderID, &o.AmountCents, &o.Currency, &o.Outcome, &o.Reason, &at)
	o.At = time.UnixMicro(at).UTC()
	return o, err
}

// loadHistory reads the order's history in one query.
func loadHistory(ctx context.Context, tx *sqldb.Tx, orderID string) (history, error) {
	h := history{}
	rows, err := tx.Query(ctx, `SELECT op, outcome, COUNT(*), COALESCE(SUM(amount_cents), 0)
		FROM psp_operations WHERE order_id = ? GROUP BY op, outcome`, orderID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k opOutcome
		var t tally
		if err := rows.Scan(&k.op, &k.outcome, &t.n, &t.amount); err != nil {
			return nil, err
		}
		h[k] = t
	}
	return h, rows.Err()
}

// Ledger lists operations, of one order when orderID is not empty.
func (s *Server) Ledger(ctx context.Context, orderID string) ([]pspapi.Operation, error) {
	q := "SELECT id, op, order_id, amount_cents, currency, outcome, reason, at_us FROM psp_operations"
	var args []any
	if orderID != "" {
		q += " WHERE order_id = ?"
		args = append(args, orderID)
	}
	rows, err := s.db.Query(ctx, q+" ORDER BY id", args...)
	if err != nil {
		return nil, fmt.Errorf("psp ledger: %w", err)
	}
	defer rows.Close()
	out := []pspapi.Operation{}
	for rows.Next() {
		var o pspapi.Operation
		var at int64
		if err := rows.Scan(&o.ID, &o.Op, &o.OrderID, &o.AmountCents, &o.Currency, &o.Outcome, &o.Reason, &at); err != nil {
			return nil, err
		}
		o.At = time.UnixMicro(at).UTC()
		out = append(out, o)
	}
	return out, rows.Err()
}

// insertOperation records a new operation under its idempotency key and
// returns its ledger id.
func insertOperation(ctx context.Context, tx *sqldb.Tx, key string, o pspapi.Operation) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO psp_operations (op, idem_key, order_id, amount_cents, currency, outcome, reason, at_us)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		o.Op, key, o.OrderID, o.AmountCents, o.Currency, o.Outcome, o.Reason, o.At.UnixMicro()).Scan(&id)
	return id, err
}

// notification is an async outcome waiting to reach the merchant.
type notification struct {
	id       int64
	payload  string
	attempts int
}

// insertNotification queues payload for the merchant from at.
func insertNotification(ctx context.Context, tx *sqldb.Tx, payload []byte, at time.Time) error {
	_, err := tx.Exec(ctx, "INSERT INTO psp_notifications (payload, next_attempt_us) VALUES (?, ?)", string(payload), at.UnixMicro())
	return err
}

// dueNotifications are up to limit undelivered notifications due by now,
// oldest first.
func dueNotifications(ctx context.Context, db *sqldb.DB, now time.Time, limit int) ([]notification, error) {
	rows, err := db.Query(ctx, "SELECT id, payload, attempts FROM psp_notifications WHERE delivered = 0 AND next_attempt_us <= ? ORDER BY id LIMIT ?",
		now.UnixMicro(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var due []notification
	for rows.Next() {
		var n notification
		if err := rows.Scan(&n.id, &n.payload, &n.attempts); err != nil {
			return nil, err
		}
		due = append(due, n)
	}
	return due, rows.Err()
}

// markNotified records that notification id reached the merchant.
func markNotified(ctx context.Context, db *sqldb.DB, id int64) error {
	_, err := db.Exec(ctx, "UPDATE psp_notifications SET delivered = 1, attempts = attempts + 1 WHERE id = ?", id)
	return err
}

// retryNotification counts a failed attempt of id and schedules the next.
func retryNotification(ctx context.Context, db *sqldb.DB, id int64, next time.Time) error {
	_, err := db.Exec(ctx, "UPDATE psp_notifications SET attempts = attempts + 1, next_attempt_us = ? WHERE id = ?", next.UnixMicro(), id)
	return err
}
