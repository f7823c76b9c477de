package inventory

import (
	"net/http"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
)

// Routes mounts the inventory API on mux.
func (s *Service) Routes(mux *http.ServeMux) { httpx.Mount(mux, s.API()) }

// API is the inventory API with its policies (s may be nil to read them):
// the catalog is public and cacheable; changing it is an admin's.
func (s *Service) API() []httpx.Route {
	read := httpx.Route{Class: "catalog", Cache: true}
	write := httpx.Route{Class: "catalog:write", Scope: identity.Admin}
	admin := httpx.Route{Class: "admin", Scope: identity.Admin}
	return []httpx.Route{
		write.With("POST /api/products", s.handleCreate),
		read.With("GET /api/products", s.handleList),
		read.With("GET /api/products/{sku}", s.handleGet),
		write.With("POST /api/products/{sku}/restock", s.handleRestock),
		admin.With("GET /api/admin/inventory/ledger", s.handleLedger),
	}
}

func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	httpx.Error(w, r, s.log, err)
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) {
	var p NewProduct
	if err := httpx.Decode(r, &p); err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.CreateProduct(r.Context(), p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/products/"+out.SKU)
	httpx.JSON(w, http.StatusCreated, out)
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	out, err := s.listProducts(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.JSONWithETag(w, r, out)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	sku := r.PathValue("sku")
	if !ValidSKU(sku) {
		s.fail(w, r, apperr.New(apperr.NotFound, "sku", "no product %q", sku))
		return
	}
	p, err := s.Product(r.Context(), sku)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.JSONWithETag(w, r, p)
}

func (s *Service) handleRestock(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Quantity int `json:"quantity"`
	}
	if err := httpx.Decode(r, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	p, err := s.Restock(r.Context(), r.PathValue("sku"), body.Quantity)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, p)
}

func (s *Service) handleLedger(w http.ResponseWriter, r *http.Request) {
	out, err := s.Ledger(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, out)
}
