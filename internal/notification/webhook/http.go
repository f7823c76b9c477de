package webhook

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// Routes mounts the webhook management API on mux.
func (s *Service) Routes(mux *http.ServeMux) { httpx.Mount(mux, s.API()) }

// API is the webhook management API with its policy (s may be nil to read
// it): an admin's.
func (s *Service) API() []httpx.Route {
	admin := httpx.Route{Class: "admin", Scope: identity.Admin}
	return []httpx.Route{
		admin.With("POST /api/webhooks/endpoints", s.handleCreate),
		admin.With("GET /api/webhooks/endpoints", s.handleList),
		admin.With("GET /api/webhooks/endpoints/{id}", s.handleGet),
		admin.With("PATCH /api/webhooks/endpoints/{id}", s.handleUpdate),
		admin.With("DELETE /api/webhooks/endpoints/{id}", s.handleDelete),
		admin.With("POST /api/webhooks/endpoints/{id}/rotate-secret", s.handleRotate),
		admin.With("POST /api/webhooks/endpoints/{id}/recover", s.handleRecover),
		admin.With("GET /api/webhooks/deliveries", s.handleDeliveries),
		admin.With("POST /api/webhooks/deliveries/{id}/retry", s.handleRetry),
	}
}

func (s *Service) answer(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	httpx.JSON(w, status, v)
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) {
	var in EndpointInput
	if err := httpx.Decode(r, &in); err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	e, err := s.CreateEndpoint(r.Context(), in)
	if err == nil {
		w.Header().Set("Location", "/api/webhooks/endpoints/"+e.ID)
	}
	s.answer(w, r, http.StatusCreated, e, err)
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	es, err := s.Endpoints(r.Context())
	for i := range es {
		es[i].Breaker = s.d.breakerState(es[i].ID)
	}
	s.answer(w, r, http.StatusOK, es, err)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	e, err := s.Endpoint(r.Context(), r.PathValue("id"))
	e.Breaker = s.d.breakerState(e.ID)
	s.answer(w, r, http.StatusOK, e, err)
}

func (s *Service) handleUpdate(w http.ResponseWriter, r *http.Request) {
	var in EndpointInput
	if err := httpx.Decode(r, &in); err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	e, err := s.UpdateEndpoint(r.Context(), r.PathValue("id"), in)
	s.answer(w, r, http.StatusOK, e, err)
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.DeleteEndpoint(r.Context(), r.PathValue("id")); err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) handleRotate(w http.ResponseWriter, r *http.Request) {
	e, err := s.RotateSecret(r.Context(), r.PathValue("id"))
	s.answer(w, r, http.StatusOK, e, err)
}

// Delivery is a delivery with its attempt log.
type Delivery struct {
	ID          string    `json:"id"`
	EndpointID  string    `json:"endpoint_id"`
	EventID     string    `json:"event_id"`
	EventType   string    `json:"event_type"`
	Status      string    `json:"status"`
	NextAttempt time.Time `json:"next_attempt_at"`
	CreatedAt   time.Time `json:"created_at"`
	Attempts    []Attempt `json:"attempts"`
}

// Attempt is one delivery attempt.
type Attempt struct {
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code"`
	LatencyMS  int64     `json:"latency_ms"`
	Error      string    `json:"error,omitempty"`
	Response   string    `json:"response"`
}

// DeliveryFilter narrows the deliveries listed: each field set must match.
type DeliveryFilter struct {
	Status, EndpointID string
	EventIDs           []string // any of them
}

// maxEventFilter bounds the event ids one list request may name.
const maxEventFilter = 100

func (s *Service) handleDeliveries(w http.ResponseWriter, r *http.Request) {
	status := r.URL.Query().Get("status")
	if status != "" && status != "pending" && status != "delivered" && status != "failed" {
		httpx.Error(w, r, s.log, apperr.Invalidf("status", "must be pending, delivered or failed"))
		return
	}
	var events []string
	if v := r.URL.Query().Get("event_id"); v != "" {
		if events = strings.Split(v, ","); len(events) > maxEventFilter {
			httpx.Error(w, r, s.log, apperr.Invalidf("event_id", "at most %d event ids, comma-separated", maxEventFilter))
			return
		}
	}
	page, err := httpx.ParsePage(r, 100, 500)
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	ds, err := s.Deliveries(r.Context(), DeliveryFilter{Status: status, EndpointID: r.URL.Query().Get("endpoint_id"), EventIDs: events}, page)
	ds = httpx.Finish(w, r, page, ds, func(d Delivery) (int64, string) { return d.CreatedAt.UnixMicro(), d.ID })
	s.answer(w, r, http.StatusOK, ds, err)
}

// Retry schedules a delivery for an immediate attempt, past its endpoint's
// open circuit breaker if it has one. Errors: NotFound, Conflict (already
// delivered).
func (s *Service) Retry(ctx context.Context, id string) error {
	endpointID, err := deliveryEndpoint(ctx, s.db, id)
	if errors.Is(err, sql.ErrNoRows) {
		return apperr.New(apperr.NotFound, "id", "no delivery %s", id)
	}
	if err != nil {
		return err
	}
	n, err := retryNow(ctx, s.db, id, s.cfg.Now())
	if err != nil {
		return err
	}
	if n == 0 {
		return apperr.New(apperr.Conflict, "id", "delivery %s was already delivered", id)
	}
	s.d.closeBreaker(endpointID)
	s.Wake()
	return nil
}

func (s *Service) handleRetry(w http.ResponseWriter, r *http.Request) {
	err := s.Retry(r.Context(), r.PathValue("id"))
	s.answer(w, r, http.StatusAccepted, map[string]string{"status": "pending"}, err)
}

// Recovered is what Recover sent out again.
type Recovered struct {
	// Failed deliveries (their attempts spent) made pending again.
	Failed int64 `json:"failed"`
	// Pending deliveries waiting for a later attempt (or never attempted,
	// held behind the endpoint's open circuit breaker) made due now.
	Waiting int64 `json:"waiting"`
	// Recovered is the sum: every delivery that goes out now.
	Recovered int64 `json:"recovered"`
}

// Recover sends out now, past the endpoint's open circuit breaker if it
// has one, every undelivered delivery of an endpoint created since since:
// the failed ones and the ones still waiting for an attempt. Errors:
// NotFound.
func (s *Service) Recover(ctx context.Context, endpointID string, since time.Time) (Recovered, error) {
	var r Recovered
	if _, err := s.Endpoint(ctx, endpointID); err != nil {
		return r, err
	}
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		r.Failed, r.Waiting, err = recoverSince(ctx, tx, endpointID, since, s.cfg.Now())
		return err
	})
	if err != nil {
		return Recovered{}, err
	}
	r.Recovered = r.Failed + r.Waiting
	s.d.closeBreaker(endpointID)
	s.Wake()
	return r, nil
}

func (s *Service) handleRecover(w http.ResponseWriter, r *http.Request) {
	since, err := time.Parse(time.RFC3339, r.URL.Query().Get("since"))
	if err != nil {
		httpx.Error(w, r, s.log, apperr.Invalidf("since", "must be an RFC 3339 time such as 2026-11-21T00:00:00Z"))
		return
	}
	n, err := s.Recover(r.Context(), r.PathValue("id"), since)
	s.answer(w, r, http.StatusAccepted, n, err)
}
