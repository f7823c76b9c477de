// Package domain is the shipping rule, a pure function: the shipment a
// confirmed order gets. It imports the event catalog and the standard
// library only (TestDomainsImportNothing).
package domain

import (
	"strings"

	"github.com/ordermesh/ordermesh/internal/event"
)

// Carrier ships every order.
const Carrier = "ordermesh-post"

// Shipment is the shipment of order orderID under id, a UUID. Its tracking
// number is the id's random half, so two shipments never share one.
func Shipment(orderID, id string) event.Shipment {
	hex := strings.ReplaceAll(id, "-", "")
	return event.Shipment{OrderID: orderID, ShipmentID: id, Carrier: Carrier, Tracking: "OM" + strings.ToUpper(hex[len(hex)/2:])}
}
