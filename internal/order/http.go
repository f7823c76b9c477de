package order

import (
	"bytes"
	"io"
	"net/http"
	"strconv"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
)

// Routes mounts the orders API on mux.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/orders", s.handlePlace)
	mux.HandleFunc("GET /api/orders", s.handleList)
	mux.HandleFunc("GET /api/orders/{id}", s.handleGet)
	mux.HandleFunc("POST /api/orders/{id}/cancel", s.handleCancel)
}

func (s *Service) handlePlace(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > 255 {
		httpx.Error(w, r, s.log, apperr.Invalidf("Idempotency-Key", "header is required (1-255 characters), so a retried request cannot place a second order"))
		return
	}
	// Read the body once: its bytes identify the request for the key.
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, httpx.MaxBody))
	if err != nil {
		httpx.Error(w, r, s.log, apperr.New(apperr.TooLarge, "", "body is larger than %d bytes", httpx.MaxBody))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	var req PlaceRequest
	if err := httpx.Decode(r, &req); err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	placed, err := s.Place(r.Context(), key, raw, req)
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/api/orders/"+placed.OrderID)
	if placed.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.WriteHeader(placed.Status)
	w.Write(placed.Body)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	o, err := s.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, o)
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			httpx.Error(w, r, s.log, apperr.Invalidf("limit", "must be a number from 1 to 500"))
			return
		}
		limit = n
	}
	orders, err := s.listOrders(r.Context(), r.URL.Query().Get("customer_id"), limit)
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, orders)
}

func (s *Service) handleCancel(w http.ResponseWriter, r *http.Request) {
	o, err := s.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	httpx.JSON(w, http.StatusAccepted, o)
}
