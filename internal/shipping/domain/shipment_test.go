package domain

import "testing"

func TestShipment(t *testing.T) {
	id := "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	sh := Shipment("o1", id)
	if sh.OrderID != "o1" || sh.ShipmentID != id || sh.Carrier != Carrier || sh.Tracking != "OM8A9B0C1D2E3F4A5B" {
		t.Fatalf("Shipment = %+v; want the order, the id, the carrier and tracking OM8A9B0C1D2E3F4A5B", sh)
	}
	other := Shipment("o1", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c")
	if other.Tracking == sh.Tracking {
		t.Fatalf("two shipment ids gave one tracking number %s", sh.Tracking)
	}
}
