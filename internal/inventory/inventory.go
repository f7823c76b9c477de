// Package inventory owns products and their stock. It reserves all lines of
// an order or none (order.placed → stock.reserved | stock.rejected),
// releases a reservation when the order is cancelled, and commits it when
// the shipment is created. Per SKU, received == available + reserved +
// committed always holds: every change moves units between the columns.
package inventory

import (
	"regexp"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
)

// Product is a catalog entry with its stock: what GET /api/products
// answers is what product.updated carries, so it is that event's data.
type Product = event.Product

// NewProduct is the body of POST /api/products.
type NewProduct struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
	Stock      int    `json:"stock"`
}

// Ledger is the stock of one SKU by state.
type Ledger struct {
	SKU       string `json:"sku"`
	Received  int    `json:"received"`
	Available int    `json:"available"`
	Reserved  int    `json:"reserved"`
	Committed int    `json:"committed"`
}

// Limits of the catalog.
const (
	MaxPriceCents = 100_000_000
	MaxStock      = 1_000_000
)

var (
	skuPattern      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
)

// ValidSKU reports whether sku is a well-formed SKU.
func ValidSKU(sku string) bool { return skuPattern.MatchString(sku) }

// Validate checks a new product; the error names the offending field.
func (p NewProduct) Validate() error {
	switch {
	case !ValidSKU(p.SKU):
		return apperr.Invalidf("sku", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	case p.Name == "" || len(p.Name) > 200:
		return apperr.Invalidf("name", "must be 1-200 characters")
	case p.PriceCents < 0 || p.PriceCents > MaxPriceCents:
		return apperr.Invalidf("price_cents", "must be between 0 and %d", MaxPriceCents)
	case !currencyPattern.MatchString(p.Currency):
		return apperr.Invalidf("currency", "must be a three-letter ISO 4217 code such as EUR")
	case p.Stock < 0 || p.Stock > MaxStock:
		return apperr.Invalidf("stock", "must be between 0 and %d", MaxStock)
	}
	return nil
}

// ValidateRestock checks a restock quantity.
func ValidateRestock(quantity int) error {
	if quantity < 1 || quantity > MaxStock {
		return apperr.Invalidf("quantity", "must be between 1 and %d", MaxStock)
	}
	return nil
}
