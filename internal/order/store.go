package order

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the orders schema.
func Migrations() sqldb.Migrations { return sqldb.Embedded("orders", migrations) }

const orderColumns = `id, customer_id, status, items, total_cents, currency, shipping_address,
	cancel_reason, version, shipped, captured, created_us, traceparent`

type scanner interface{ Scan(...any) error }

func scanOrder(row scanner) (Order, error) {
	var (
		o                 Order
		items, addr       string
		shipped, captured int
		created           int64
	)
	if err := row.Scan(&o.ID, &o.CustomerID, &o.Status, &items, &o.TotalCents, &o.Currency, &addr,
		&o.CancelReason, &o.Version, &shipped, &captured, &created, &o.TraceParent); err != nil {
		return Order{}, err
	}
	if err := json.Unmarshal([]byte(items), &o.Items); err != nil {
		return Order{}, fmt.Errorf("order %s items: %w", o.ID, err)
	}
	if err := json.Unmarshal([]byte(addr), &o.ShippingAddress); err != nil {
		return Order{}, fmt.Errorf("order %s address: %w", o.ID, err)
	}
	o.HasShipped, o.Captured = shipped == 1, captured == 1
	o.CreatedAt = time.UnixMicro(created).UTC()
	return o, nil
}

// loadOrder reads an order with its timeline. Errors: NotFound.
func loadOrder(ctx context.Context, q sqldb.Querier, id string, lock bool) (Order, error) {
	o, err := loadState(ctx, q, id, lock)
	if err != nil {
		return Order{}, err
	}
	// Up to the version read: a step committed since is not shown beside
	// the older state.
	rows, err := q.Query(ctx, "SELECT type, at_us FROM order_timeline WHERE order_id = ? AND version <= ? ORDER BY version", id, o.Version)
	if err != nil {
		return Order{}, fmt.Errorf("load timeline of %s: %w", id, err)
	}
	defer rows.Close()
	o.Timeline = []Step{}
	for rows.Next() {
		var s Step
		var at int64
		if err := rows.Scan(&s.Type, &at); err != nil {
			return Order{}, err
		}
		s.At = time.UnixMicro(at).UTC()
		o.Timeline = append(o.Timeline, s)
	}
	return o, rows.Err()
}

// loadState reads an order without its timeline, for the state machine.
// Errors: NotFound.
func loadState(ctx context.Context, q sqldb.Querier, id string, lock bool) (Order, error) {
	query := "SELECT " + orderColumns + " FROM orders WHERE id = ?"
	if tx, ok := q.(*sqldb.Tx); ok && lock {
		query += tx.ForUpdate()
	}
	o, err := scanOrder(q.QueryRow(ctx, query, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, apperr.New(apperr.NotFound, "id", "no order %s", id)
	}
	if err != nil {
		return Order{}, fmt.Errorf("load order %s: %w", id, err)
	}
	return o, nil
}

func insertOrder(ctx context.Context, tx *sqldb.Tx, o Order, deadline time.Time) error {
	items, _ := json.Marshal(o.Items)
	addr, _ := json.Marshal(o.ShippingAddress)
	_, err := tx.Exec(ctx, `INSERT INTO orders (id, customer_id, status, items, total_cents, currency, payment_token,
		shipping_address, version, deadline_us, created_us, traceparent) VALUES (?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?)`,
		o.ID, o.CustomerID, o.Status, string(items), o.TotalCents, o.Currency, string(addr),
		o.Version, deadline.UnixMicro(), o.CreatedAt.UnixMicro(), o.TraceParent)
	if err != nil {
		return fmt.Errorf("insert order %s: %w", o.ID, err)
	}
	return appendStep(ctx, tx, o, event.OrderPlaced, o.CreatedAt)
}

// appendStep records that o reached its current version through typ,
// with o as it is now (without its timeline) for live status streams.
func appendStep(ctx context.Context, tx *sqldb.Tx, o Order, typ string, at time.Time) error {
	o.Timeline = nil
	snapshot, err := json.Marshal(o)
	if err != nil {
		return err
	}
	// Sent with the next statement or the commit (sqldb.Tx.Defer).
	return tx.Defer(ctx, "INSERT INTO order_timeline (order_id, version, type, at_us, snapshot) VALUES (?, ?, ?, ?, ?)",
		o.ID, o.Version, typ, at.UnixMicro(), string(snapshot))
}

// Change is one step of an order with the order as it was then.
type Change struct {
	Version int
	Type    string
	Order   json.RawMessage
}

// changesAfter returns the steps of order id after version after, oldest first.
func changesAfter(ctx context.Context, q sqldb.Querier, id string, after int) ([]Change, error) {
	rows, err := q.Query(ctx, "SELECT version, type, snapshot FROM order_timeline WHERE order_id = ? AND version > ? ORDER BY version", id, after)
	if err != nil {
		return nil, fmt.Errorf("changes of %s: %w", id, err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		var snap string
		if err := rows.Scan(&c.Version, &c.Type, &snap); err != nil {
			return nil, err
		}
		c.Order = json.RawMessage(snap)
		out = append(out, c)
	}
	return out, rows.Err()
}

// saveTransition writes o's new status and flags with version+1, but only
// if the stored version is still o.Version (so two instances cannot both
// move one order), and appends step to the timeline.
func saveTransition(ctx context.Context, tx *sqldb.Tx, o *Order, step string, at time.Time) (bool, error) {
	res, err := tx.Exec(ctx, `UPDATE orders SET status = ?, cancel_reason = ?, shipped = ?, captured = ?, version = version + 1
		WHERE id = ? AND version = ?`, o.Status, o.CancelReason, sqldb.BoolInt(o.HasShipped), sqldb.BoolInt(o.Captured), o.ID, o.Version)
	if err != nil {
		return false, fmt.Errorf("update order %s: %w", o.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	o.Version++
	if step == "" {
		return true, nil
	}
	if err := appendStep(ctx, tx, *o, step, at); err != nil {
		return false, err
	}
	return true, nil
}

// price returns the unit price and currency of sku from the catalog read
// model. Errors: Unprocessable when the SKU is unknown.
func price(ctx context.Context, tx *sqldb.Tx, sku, field string) (int64, string, error) {
	var cents int64
	var currency string
	err := tx.QueryRow(ctx, "SELECT price_cents, currency FROM catalog WHERE sku = ?", sku).Scan(&cents, &currency)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", unknownSKUError{apperr.New(apperr.Unprocessable, field, "unknown SKU %s", sku), sku}
	}
	return cents, currency, err
}

// unknownSKUError is an Unprocessable error for a SKU missing from the
// catalog read model, which may only lag behind inventory.
type unknownSKUError struct {
	err *apperr.Error
	sku string
}

func (e unknownSKUError) Error() string { return e.err.Error() }
func (e unknownSKUError) Unwrap() error { return e.err }

func (s *Service) listOrders(ctx context.Context, customerID, status string, page httpx.Page) ([]Order, error) {
	q := "SELECT " + orderColumns + " FROM orders WHERE 1 = 1"
	var args []any
	if customerID != "" {
		q += " AND customer_id = ?"
		args = append(args, customerID)
	}
	if status != "" {
		q += " AND status = ?"
		args = append(args, status)
	}
	q, args = page.Where(q, args)
	rows, err := s.db.Query(ctx, q+" ORDER BY created_us DESC, id DESC LIMIT ?", args...)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	defer rows.Close()
	out := []Order{}
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// existingOrders returns which of ids are stored orders.
func existingOrders(ctx context.Context, q sqldb.Querier, ids []any) (map[string]bool, error) {
	rows, err := q.Query(ctx, "SELECT id FROM orders WHERE id IN ("+sqldb.Placeholders(len(ids))+")", ids...)
	if err != nil {
		return nil, fmt.Errorf("look up orders: %w", err)
	}
	defer rows.Close()
	out := make(map[string]bool, len(ids))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

// upsertProduct applies a product.updated to the catalog read model.
func upsertProduct(ctx context.Context, tx *sqldb.Tx, p event.Product) error {
	_, err := tx.Exec(ctx, `INSERT INTO catalog (sku, name, price_cents, currency) VALUES (?, ?, ?, ?)
		ON CONFLICT (sku) DO UPDATE SET name = excluded.name, price_cents = excluded.price_cents, currency = excluded.currency`,
		p.SKU, p.Name, p.PriceCents, p.Currency)
	return err
}

// countPendingDueBefore counts, up to limit, the pending orders whose
// deadline is before t.
func countPendingDueBefore(ctx context.Context, q sqldb.Querier, t time.Time, limit int) (int, error) {
	var n int
	err := q.QueryRow(ctx, "SELECT COUNT(*) FROM (SELECT 1 FROM orders WHERE status = 'pending' AND deadline_us < ? LIMIT ?) due",
		t.UnixMicro(), limit).Scan(&n)
	return n, err
}

// overdueOrders returns up to limit pending orders whose deadline is
// before now, the most overdue first.
func overdueOrders(ctx context.Context, q sqldb.Querier, now time.Time, limit int) ([]string, error) {
	rows, err := q.Query(ctx, "SELECT id FROM orders WHERE status = 'pending' AND deadline_us < ? ORDER BY deadline_us LIMIT ?", now.UnixMicro(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// customerOf returns the customer of order id (sql.ErrNoRows: no such order).
func customerOf(ctx context.Context, q sqldb.Querier, id string) (string, error) {
	var customer string
	err := q.QueryRow(ctx, "SELECT customer_id FROM orders WHERE id = ?", id).Scan(&customer)
	return customer, err
}
