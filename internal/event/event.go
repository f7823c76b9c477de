// Package event is ordermesh's event catalog (ARCHITECTURE.md, "Events"): the type of
// every event, the Go struct of its data, and its JSON Schema in
// schemas/<type>.json, which contract tests validate every emitted payload
// against.
package event

// Event types: past-tense facts, published on events.<type>.
const (
	OrderPlaced       = "order.placed"
	OrderConfirmed    = "order.confirmed"
	OrderCompleted    = "order.completed"
	OrderCancelled    = "order.cancelled"
	StockReserved     = "stock.reserved"
	StockRejected     = "stock.rejected"
	StockReleased     = "stock.released"
	StockCommitted    = "stock.committed"
	PaymentAuthorized = "payment.authorized"
	PaymentFailed     = "payment.failed"
	PaymentCaptured   = "payment.captured"
	PaymentVoided     = "payment.voided"
	PaymentRefunded   = "payment.refunded"
	ShipmentCreated   = "shipment.created"
	ProductUpdated    = "product.updated"
	EndpointDisabled  = "endpoint.disabled"
)

// Types lists every event type in the catalog.
var Types = []string{
	OrderPlaced, OrderConfirmed, OrderCompleted, OrderCancelled,
	StockReserved, StockRejected, StockReleased, StockCommitted,
	PaymentAuthorized, PaymentFailed, PaymentCaptured, PaymentVoided, PaymentRefunded,
	ShipmentCreated, ProductUpdated, EndpointDisabled,
}

// Publishers names the one service that may publish each event type. The
// broker lets no other service's identity publish it, and consumers
// dead-letter an event whose source is not that service's (Source).
var Publishers = map[string]string{
	OrderPlaced: "orders", OrderConfirmed: "orders", OrderCompleted: "orders", OrderCancelled: "orders",
	StockReserved: "inventory", StockRejected: "inventory", StockReleased: "inventory", StockCommitted: "inventory",
	ProductUpdated:    "inventory",
	PaymentAuthorized: "payments", PaymentFailed: "payments", PaymentCaptured: "payments", PaymentVoided: "payments", PaymentRefunded: "payments",
	ShipmentCreated:  "shipping",
	EndpointDisabled: "notifications",
}

// Source is the CloudEvents source of the events service publishes.
func Source(service string) string { return "ordermesh/" + service }

// Published are the event types service publishes.
func Published(service string) []string {
	var out []string
	for _, t := range Types {
		if Publishers[t] == service {
			out = append(out, t)
		}
	}
	return out
}

// Cancel reasons of order.cancelled.
const (
	ReasonOutOfStock      = "out_of_stock"
	ReasonPaymentDeclined = "payment_declined"
	ReasonTimeout         = "timeout"
	ReasonCustomerRequest = "customer_request"
	// ReasonRejected cancels an order.placed that the orders service never
	// accepted (a forged or misrouted event), so whatever other services
	// did for it is compensated.
	ReasonRejected = "rejected"
)

// Line is one order line with the unit price the order was placed at.
type Line struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Address is a shipping address.
type Address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// Placed is the data of order.placed.
type Placed struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Items      []Line `json:"items"`
	TotalCents int64  `json:"total_cents"`
	Currency   string `json:"currency"`
	// PaymentMethod is the card's payment token sealed to the payments
	// service's key for this order (package sealed): only payments can
	// open it, and it opens for no other order.
	PaymentMethod string `json:"payment_method,omitempty"`
	// PaymentToken is the token in the clear, as versions before the
	// sealed payment_method published it. Never emitted any more; payments
	// still reads it from events stored before an upgrade.
	PaymentToken    string  `json:"payment_token,omitempty"`
	ShippingAddress Address `json:"shipping_address"`
}

// Confirmed is the data of order.confirmed.
type Confirmed struct {
	OrderID         string  `json:"order_id"`
	CustomerID      string  `json:"customer_id"`
	Items           []Line  `json:"items"`
	ShippingAddress Address `json:"shipping_address"`
}

// OrderRef is the data of order.completed and the stock and payment
// compensation facts that only name the order.
type OrderRef struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id,omitempty"`
}

// Cancelled is the data of order.cancelled.
type Cancelled struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Reason     string `json:"reason"`
}

// Reserved is the data of stock.reserved.
type Reserved struct {
	OrderID string `json:"order_id"`
	Items   []Line `json:"items"`
}

// Rejected is the data of stock.rejected.
type Rejected struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
	Reason  string `json:"reason"`
}

// Payment is the data of payment.authorized, payment.captured,
// payment.voided and payment.refunded.
type Payment struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	ProviderRef string `json:"provider_ref"`
}

// PaymentFailure is the data of payment.failed.
type PaymentFailure struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// Shipment is the data of shipment.created.
type Shipment struct {
	OrderID    string `json:"order_id"`
	ShipmentID string `json:"shipment_id"`
	Carrier    string `json:"carrier"`
	Tracking   string `json:"tracking"`
}

// Product is the data of product.updated: the catalog entry as it is now.
type Product struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
	Available  int    `json:"available"`
}

// Endpoint is the data of endpoint.disabled: a merchant's webhook endpoint
// that ordermesh stopped delivering to.
type Endpoint struct {
	EndpointID string `json:"endpoint_id"`
	URL        string `json:"url"`
	Reason     string `json:"reason"`
}

// Token is the payment method as the event carries it: sealed, or in the
// clear in an event stored before the upgrade that sealed it.
func (p Placed) Token() string {
	if p.PaymentMethod != "" {
		return p.PaymentMethod
	}
	return p.PaymentToken
}
