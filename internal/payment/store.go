package payment

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"

	"github.com/ordermesh/ordermesh/internal/payment/domain"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the payments schema.
func Migrations() sqldb.Migrations { return sqldb.Embedded("payments", migrations) }

func (s *Service) loadMany(ctx context.Context, ids []string) (map[string]*domain.Payment, error) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := s.db.Query(ctx, "SELECT order_id, amount_cents, currency, token, state, cancelled, provider_ref, version, traceparent FROM payments WHERE order_id IN ("+sqldb.Placeholders(len(ids))+")", args...)
	if err != nil {
		return nil, fmt.Errorf("load payments: %w", err)
	}
	defer rows.Close()
	out := make(map[string]*domain.Payment, len(ids))
	for rows.Next() {
		var p domain.Payment
		var cancelled int
		if err := rows.Scan(&p.OrderID, &p.Amount, &p.Currency, &p.Token, &p.State, &cancelled, &p.Ref, &p.Version, &p.Trace); err != nil {
			return nil, err
		}
		p.Cancelled = cancelled == 1
		p.State = ruleState(p.State)
		out[p.OrderID] = &p
	}
	return out, rows.Err()
}

// errWriteConflict means a payment changed between load and save.
var errWriteConflict = errors.New("changed by another writer since it was read; will retry")

// save writes p: an update if it existed when loaded, which must still be
// at the version loaded, else an insert, which must be the first.
func save(ctx context.Context, tx *sqldb.Tx, p *domain.Payment, existed bool) error {
	c := 0
	if p.Cancelled {
		c = 1
	}
	var res sql.Result
	var err error
	if existed {
		res, err = tx.Exec(ctx, `UPDATE payments SET amount_cents = ?, currency = ?, token = ?, state = ?, cancelled = ?,
			provider_ref = ?, traceparent = ?, version = version + 1 WHERE order_id = ? AND version = ?`,
			p.Amount, p.Currency, p.Token, storedState(p), c, p.Ref, p.Trace, p.OrderID, p.Version)
	} else {
		res, err = tx.Exec(ctx, `INSERT INTO payments (order_id, amount_cents, currency, token, state, cancelled, provider_ref, traceparent)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING`,
			p.OrderID, p.Amount, p.Currency, p.Token, storedState(p), c, p.Ref, p.Trace)
	}
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("payment of %s %w", p.OrderID, errWriteConflict)
	}
	return nil
}

func (s *Service) loadOne(ctx context.Context, orderID string) (*domain.Payment, bool, error) {
	ps, err := s.loadMany(ctx, []string{orderID})
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, false, err
	}
	p, ok := ps[orderID]
	return p, ok, nil
}

// stateOf is the state of order orderID's payment ("" for none).
func stateOf(ctx context.Context, tx *sqldb.Tx, orderID string) (string, error) {
	var state string
	err := tx.QueryRow(ctx, "SELECT state FROM payments WHERE order_id = ?", orderID).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return ruleState(state), err
}

// stateCancelled is how the payments table shows a payment cancelled
// before anything was authorized: a final state for an operator, where
// the rules still see it as pending and cancelled (a late authorization
// another instance made is then voided, see decide).
const stateCancelled = "cancelled"

// storedState is p's state as the table keeps it.
func storedState(p *domain.Payment) string {
	if p.Cancelled && p.State == domain.StatePending {
		return stateCancelled
	}
	return p.State
}

// ruleState is a stored state as the rules see it.
func ruleState(stored string) string {
	if stored == stateCancelled {
		return domain.StatePending
	}
	return stored
}

// settleAuthorizing moves a payment still authorizing to state, with the
// provider's reference ref ("" keeps the one it has), and reports whether
// it was still authorizing. A cancelled payment moves only to voided.
func settleAuthorizing(ctx context.Context, tx *sqldb.Tx, orderID, state, ref string) (bool, error) {
	q := "UPDATE payments SET state = ?, provider_ref = COALESCE(NULLIF(?, ''), provider_ref), version = version + 1 WHERE order_id = ? AND state = ?"
	if state != domain.StateVoided {
		q += " AND cancelled = 0"
	}
	res, err := tx.Exec(ctx, q, state, ref, orderID, domain.StateAuthorizing)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}
