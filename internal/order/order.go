// Package order owns orders: it accepts them (POST /api/orders, with
// Idempotency-Key), prices them from its own read model of the catalog,
// and drives each order's state machine from the saga's events:
//
//	pending → confirmed (payment authorized, so stock was reserved)
//	        → shipped (shipment created) → completed (payment captured)
//	pending | confirmed → cancelled (out_of_stock, payment_declined,
//	                                 timeout, customer_request)
//
// Late and duplicate events never move an order backwards.
package order

import (
	"fmt"
	"regexp"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/order/domain"
)

// The order rules' names, used across the service.
type (
	Order = domain.Order
	Step  = domain.Step
)

// Statuses.
const (
	Pending   = domain.Pending
	Confirmed = domain.Confirmed
	Shipped   = domain.Shipped
	Completed = domain.Completed
	Cancelled = domain.Cancelled
)

// PlaceRequest is the body of POST /api/orders.
type PlaceRequest struct {
	CustomerID      string        `json:"customer_id"`
	Items           []ItemRequest `json:"items"`
	PaymentToken    string        `json:"payment_token"`
	ShippingAddress event.Address `json:"shipping_address"`
}

// ItemRequest is one requested line.
type ItemRequest struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// Limits of an order.
const (
	MaxLines    = 100
	MaxQuantity = 1000
)

var (
	skuPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	countryPattern = regexp.MustCompile(`^[A-Z]{2}$`)
)

// Validate checks the request's shape; the error names the field.
func (r PlaceRequest) Validate() error {
	if r.CustomerID == "" || len(r.CustomerID) > 100 {
		return apperr.Invalidf("customer_id", "is required (1-100 characters)")
	}
	if len(r.Items) == 0 {
		return apperr.Invalidf("items", "must hold at least one line")
	}
	if len(r.Items) > MaxLines {
		return apperr.Invalidf("items", "must hold at most %d lines, got %d", MaxLines, len(r.Items))
	}
	seen := map[string]bool{}
	for i, it := range r.Items {
		field := fmt.Sprintf("items[%d]", i)
		switch {
		case !skuPattern.MatchString(it.SKU):
			return apperr.Invalidf(field+".sku", "must be a SKU (1-64 letters, digits, '.', '_' or '-')")
		case it.Quantity < 1 || it.Quantity > MaxQuantity:
			return apperr.Invalidf(field+".quantity", "must be between 1 and %d, got %d", MaxQuantity, it.Quantity)
		case seen[it.SKU]:
			return apperr.Invalidf(field+".sku", "%s appears twice; put the total quantity on one line", it.SKU)
		}
		seen[it.SKU] = true
	}
	if r.PaymentToken == "" || len(r.PaymentToken) > 100 {
		return apperr.Invalidf("payment_token", "is required (1-100 characters)")
	}
	a := r.ShippingAddress
	for _, f := range []struct{ name, v string }{{"name", a.Name}, {"line1", a.Line1}, {"city", a.City}, {"postal_code", a.PostalCode}} {
		if f.v == "" || len(f.v) > 200 {
			return apperr.Invalidf("shipping_address."+f.name, "is required (1-200 characters)")
		}
	}
	if !countryPattern.MatchString(a.Country) {
		return apperr.Invalidf("shipping_address.country", "must be a two-letter ISO 3166 code such as FR")
	}
	return nil
}
