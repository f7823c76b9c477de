package shipping

import (
	"testing"

	"github.com/google/uuid"
)

func TestNewShipment(t *testing.T) {
	id := uuid.MustParse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
	sh := newShipment("o1", id)
	if sh.OrderID != "o1" || sh.ShipmentID != id.String() || sh.Carrier != carrier || sh.Tracking != "OM8A9B0C1D2E3F4A5B" {
		t.Fatalf("newShipment = %+v; want the order, the id, the carrier and tracking OM8A9B0C1D2E3F4A5B", sh)
	}
	other := newShipment("o1", uuid.MustParse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"))
	if other.Tracking == sh.Tracking {
		t.Fatalf("two shipment ids gave one tracking number %s", sh.Tracking)
	}
}
