package inventory

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/inventory/domain"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the inventory schema.
func Migrations() sqldb.Migrations { return sqldb.Embedded("inventory", migrations) }

func insertProduct(ctx context.Context, tx *sqldb.Tx, p NewProduct) error {
	res, err := tx.Exec(ctx, `INSERT INTO products (sku, name, price_cents, currency, received, available, reserved, committed)
		VALUES (?, ?, ?, ?, ?, ?, 0, 0) ON CONFLICT (sku) DO NOTHING`, p.SKU, p.Name, p.PriceCents, p.Currency, p.Stock, p.Stock)
	if err != nil {
		return fmt.Errorf("insert product %s: %w", p.SKU, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.Conflict, "sku", "product %s already exists", p.SKU)
	}
	return nil
}

func restock(ctx context.Context, tx *sqldb.Tx, sku string, quantity int) error {
	res, err := tx.Exec(ctx, "UPDATE products SET received = received + ?, available = available + ? WHERE sku = ?", quantity, quantity, sku)
	if err != nil {
		return fmt.Errorf("restock %s: %w", sku, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "sku", "no product %s", sku)
	}
	return nil
}

func getProduct(ctx context.Context, q sqldb.Querier, sku string) (Product, error) {
	var p Product
	err := q.QueryRow(ctx, "SELECT sku, name, price_cents, currency, available FROM products WHERE sku = ?", sku).
		Scan(&p.SKU, &p.Name, &p.PriceCents, &p.Currency, &p.Available)
	if errors.Is(err, sql.ErrNoRows) {
		return Product{}, apperr.New(apperr.NotFound, "sku", "no product %s", sku)
	}
	if err != nil {
		return Product{}, fmt.Errorf("get product %s: %w", sku, err)
	}
	return p, nil
}

func (s *Service) listProducts(ctx context.Context) ([]Product, error) {
	rows, err := s.db.Query(ctx, "SELECT sku, name, price_cents, currency, available FROM products ORDER BY sku")
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	defer rows.Close()
	out := []Product{}
	for rows.Next() {
		var p Product
		if err := rows.Scan(&p.SKU, &p.Name, &p.PriceCents, &p.Currency, &p.Available); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Ledger returns the stock of every SKU by state.
func (s *Service) Ledger(ctx context.Context) ([]Ledger, error) {
	rows, err := s.db.Query(ctx, "SELECT sku, received, available, reserved, committed FROM products ORDER BY sku")
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	defer rows.Close()
	out := []Ledger{}
	for rows.Next() {
		var l Ledger
		if err := rows.Scan(&l.SKU, &l.Received, &l.Available, &l.Reserved, &l.Committed); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// lockOrder takes order orderID's row for this transaction and returns
// its committed state ("" for an order not heard of yet). The row is
// claimed first (inserted empty if absent), so that two transactions
// deciding about one order wait for each other even when neither has
// seen it before: the second reads what the first committed, never a
// state that is already gone. On SQLite the write transaction holds the
// whole database.
func lockOrder(ctx context.Context, tx *sqldb.Tx, orderID string) (string, error) {
	if _, err := tx.Exec(ctx, "INSERT INTO stock_orders (order_id, state) VALUES (?, '') ON CONFLICT (order_id) DO NOTHING", orderID); err != nil {
		return "", fmt.Errorf("claim order %s: %w", orderID, err)
	}
	var state string
	err := tx.QueryRow(ctx, "SELECT state FROM stock_orders WHERE order_id = ?"+tx.ForUpdate(), orderID).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return state, err
}

func setOrderState(ctx context.Context, tx *sqldb.Tx, orderID, state string) error {
	_, err := tx.Exec(ctx, `INSERT INTO stock_orders (order_id, state) VALUES (?, ?)
		ON CONFLICT (order_id) DO UPDATE SET state = excluded.state`, orderID, state)
	return err
}

// tryReserve reserves every line or none. It returns the SKU that could
// not be reserved ("" on success) and why.
func tryReserve(ctx context.Context, tx *sqldb.Tx, orderID string, lines []event.Line) (string, string, error) {
	skus, qty := domain.Need(lines)
	available := make(map[string]int, len(skus))
	for _, sku := range skus {
		var n int
		err := tx.QueryRow(ctx, "SELECT available FROM products WHERE sku = ?"+tx.ForUpdate(), sku).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return "", "", err
		}
		available[sku] = n
	}
	if sku, reason := domain.Shortfall(skus, qty, available); sku != "" {
		return sku, reason, nil
	}
	for _, sku := range skus {
		if _, err := tx.Exec(ctx, "UPDATE products SET available = available - ?, reserved = reserved + ? WHERE sku = ?", qty[sku], qty[sku], sku); err != nil {
			return "", "", err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO reservations (order_id, sku, quantity) VALUES (?, ?, ?)", orderID, sku, qty[sku]); err != nil {
			return "", "", err
		}
	}
	return "", "", nil
}

// moveReserved moves an order's reserved units: from reserved to
// available (release) or to committed (commit), or from committed back to
// available (release after commit).
func moveReserved(ctx context.Context, tx *sqldb.Tx, orderID, setClause string) error {
	rows, err := tx.Query(ctx, "SELECT sku, quantity FROM reservations WHERE order_id = ? ORDER BY sku", orderID)
	if err != nil {
		return err
	}
	type res struct {
		sku string
		q   int
	}
	var rs []res
	for rows.Next() {
		var r res
		if err := rows.Scan(&r.sku, &r.q); err != nil {
			rows.Close()
			return err
		}
		rs = append(rs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range rs {
		if _, err := tx.Exec(ctx, "UPDATE products SET "+setClause+" WHERE sku = ?", r.q, r.q, r.sku); err != nil {
			return err
		}
	}
	return nil
}

// moves are the SET clauses of moveReserved, by action.
var moves = map[domain.Action]string{
	domain.ReleaseReserved:  "available = available + ?, reserved = reserved - ?",
	domain.CommitReserved:   "committed = committed + ?, reserved = reserved - ?",
	domain.ReleaseCommitted: "available = available + ?, committed = committed - ?",
}

// lockStock locks, on PostgreSQL, every product row a batch of events may
// change, in SKU order, before any handler runs. Handlers then lock rows
// one event at a time in whatever order the events came, but they already
// hold them: two batches (on two instances) that share SKUs queue on the
// first one instead of each holding one the other waits for. SQLite needs
// nothing: its write transaction holds the whole database.
func lockStock(ctx context.Context, tx *sqldb.Tx, evs []bus.Event) error {
	if tx.Dialect() != sqldb.Postgres {
		return nil
	}
	skus := map[string]bool{}
	var others []any // orders whose reservations the batch may move
	for _, ev := range evs {
		if ev.Type != event.OrderPlaced {
			others = append(others, ev.Subject)
			continue
		}
		var d event.Placed
		if err := ev.DecodeData(&d); err != nil {
			continue // the handler reports it
		}
		for _, l := range d.Items {
			skus[l.SKU] = true
		}
	}
	if len(others) > 0 {
		rows, err := tx.Query(ctx, "SELECT DISTINCT sku FROM reservations WHERE order_id IN ("+sqldb.Placeholders(len(others))+")", others...)
		if err != nil {
			return fmt.Errorf("lock stock: %w", err)
		}
		for rows.Next() {
			var sku string
			if err := rows.Scan(&sku); err != nil {
				rows.Close()
				return err
			}
			skus[sku] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	if len(skus) == 0 {
		return nil
	}
	args := make([]any, 0, len(skus))
	for _, sku := range slices.Sorted(maps.Keys(skus)) {
		args = append(args, sku)
	}
	rows, err := tx.Query(ctx, "SELECT sku FROM products WHERE sku IN ("+sqldb.Placeholders(len(args))+") ORDER BY sku FOR UPDATE", args...)
	if err != nil {
		return fmt.Errorf("lock stock: %w", err)
	}
	defer rows.Close()
	for rows.Next() { // each row is locked as it is read
	}
	return rows.Err()
}
