package notification

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ordermesh/ordermesh/internal/notification/migrations"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// recordCustomer remembers whose order orderID is, from its order.placed.
func recordCustomer(ctx context.Context, tx *sqldb.Tx, orderID, customerID string) error {
	_, err := tx.Exec(ctx, "INSERT INTO order_customers (order_id, customer_id) VALUES (?, ?) ON CONFLICT (order_id) DO NOTHING", orderID, customerID)
	return err
}

// customerOf is the customer of orderID; an error to retry when its
// order.placed has not been handled yet.
func customerOf(ctx context.Context, tx *sqldb.Tx, orderID string) (string, error) {
	var customer string
	err := tx.QueryRow(ctx, "SELECT customer_id FROM order_customers WHERE order_id = ?", orderID).Scan(&customer)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("customer of order %s not known yet; will retry", orderID)
	}
	return customer, err
}

// insertMessage stores m once (by its event), with the commit
// (sqldb.Tx.Defer).
func insertMessage(ctx context.Context, tx *sqldb.Tx, m Message) error {
	return tx.Defer(ctx, `INSERT INTO messages (event_id, order_id, customer_id, type, subject, body, at_us) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, m.EventID, m.OrderID, m.CustomerID, m.Type, m.Subject, m.Body, m.At.UnixMicro())
}

// Migrations is the notifications schema.
func Migrations() sqldb.Migrations { return migrations.Migrations() }

// Messages lists messages, of one order when orderID is not empty.
func (s *Service) Messages(ctx context.Context, orderID string) ([]Message, error) {
	q := "SELECT event_id, order_id, customer_id, type, subject, body, at_us FROM messages"
	var args []any
	if orderID != "" {
		q += " WHERE order_id = ?"
		args = append(args, orderID)
	}
	rows, err := s.db.Query(ctx, q+" ORDER BY at_us LIMIT 10000", args...)
	if err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	defer rows.Close()
	out := []Message{}
	for rows.Next() {
		var m Message
		var at int64
		if err := rows.Scan(&m.EventID, &m.OrderID, &m.CustomerID, &m.Type, &m.Subject, &m.Body, &at); err != nil {
			return nil, err
		}
		m.At = time.UnixMicro(at).UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}
