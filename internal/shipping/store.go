package shipping

import (
	"context"
	"embed"
	"fmt"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// insertShipment stores sh unless its order has a shipment or was
// cancelled, and reports whether it did.
func insertShipment(ctx context.Context, tx *sqldb.Tx, sh event.Shipment) (bool, error) {
	res, err := tx.Exec(ctx, `INSERT INTO shipments (order_id, state, shipment_id, carrier, tracking) VALUES (?, 'created', ?, ?, ?)
		ON CONFLICT (order_id) DO NOTHING`, sh.OrderID, sh.ShipmentID, sh.Carrier, sh.Tracking)
	if err != nil {
		return false, fmt.Errorf("create shipment for %s: %w", sh.OrderID, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// markCancelled records a cancelled order, so that it never ships.
func markCancelled(ctx context.Context, tx *sqldb.Tx, orderID string) error {
	_, err := tx.Exec(ctx, "INSERT INTO shipments (order_id, state) VALUES (?, 'cancelled') ON CONFLICT (order_id) DO NOTHING", orderID)
	return err
}

//go:embed migrations
var migrations embed.FS

// Migrations is the shipping schema.
func Migrations() sqldb.Migrations { return sqldb.Embedded("shipping", migrations) }
