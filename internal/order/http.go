package order

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"time"

	"io"
	"net/http"
	"strconv"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/sse"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
)

// Routes mounts the orders API on mux.
func (s *Service) Routes(mux *http.ServeMux) { httpx.Mount(mux, s.API()) }

// API is the orders API with its policies (s may be nil to read them).
// A GET with ?wait is a long poll.
func (s *Service) API() []httpx.Route {
	read := httpx.Route{Class: "orders:read", Scope: identity.OrdersRead, StreamIf: "wait"}
	write := httpx.Route{Class: "orders:write", Scope: identity.OrdersWrite}
	events := read
	events.Stream = true
	return []httpx.Route{
		write.With("POST /api/orders", s.handlePlace),
		read.With("GET /api/orders", s.handleList),
		read.With("GET /api/orders/{id}", s.handleGet),
		events.With("GET /api/orders/{id}/events", s.handleEvents),
		write.With("POST /api/orders/{id}/cancel", s.handleCancel),
	}
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
	// A customer places orders as itself (customer_id may be left out);
	// admin acts for a customer it names.
	caller := identity.From(r.Context())
	if req.CustomerID == "" && !caller.Has(identity.Admin) {
		req.CustomerID = caller.Subject
	}
	if !caller.Owns(req.CustomerID) {
		httpx.Error(w, r, s.log, apperr.New(apperr.Forbidden, "customer_id", "you may place orders only as %q", caller.Subject))
		return
	}
	placed, err := s.Place(r.Context(), caller.Subject, key, raw, req)
	if err != nil {
		if apperr.KindOf(err) == apperr.Unavailable {
			w.Header().Set("Retry-After", "1")
		}
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

// MaxWait is the longest a long-polling GET may wait.
const MaxWait = 60 * time.Second

// handleGet answers GET /api/orders/{id}, and long-polls with
// ?wait=DURATION&after_version=N: it answers as soon as the version
// exceeds N, or 304 when the wait ends with no change.
func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("wait") == "" {
		o, err := s.Get(r.Context(), r.PathValue("id"))
		if err == nil && !identity.From(r.Context()).Owns(o.CustomerID) {
			err = apperr.New(apperr.NotFound, "", "order %s not found", r.PathValue("id"))
		}
		if err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, o)
		return
	}
	if err := s.owned(r); err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	wait, err := time.ParseDuration(q.Get("wait"))
	if err != nil || wait <= 0 || wait > MaxWait {
		httpx.Error(w, r, s.log, apperr.Invalidf("wait", "must be a duration up to %s, such as 25s", MaxWait))
		return
	}
	after, err := strconv.Atoi(q.Get("after_version"))
	if err != nil || after < 0 {
		httpx.Error(w, r, s.log, apperr.Invalidf("after_version", "is required with wait: the version you have, 0 or more"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	o, changed, err := s.WaitVersion(ctx, r.PathValue("id"), after)
	switch {
	case err != nil:
		httpx.Error(w, r, s.log, err)
	case !changed:
		w.WriteHeader(http.StatusNotModified)
	default:
		httpx.JSON(w, http.StatusOK, o)
	}
}

// keepAlive is how often an idle event stream gets a comment.
const keepAlive = 15 * time.Second

// handleEvents streams an order's history, then its changes live, as
// Server-Sent Events: id = version, event = type, data = the order at that
// version. Last-Event-ID resumes after that version. The stream ends after
// a terminal state.
func (s *Service) handleEvents(w http.ResponseWriter, r *http.Request) {
	if err := s.owned(r); err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	id := r.PathValue("id")
	last, err := sse.LastEventID(r, r.URL.Query().Get("after_version"))
	if err != nil {
		httpx.Error(w, r, s.log, apperr.Invalidf("Last-Event-ID", "%v", err))
		return
	}
	changes, err := s.ChangesAfter(r.Context(), id, last)
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	if len(changes) == 0 {
		// Resumed after the last step of a finished order: nothing will
		// ever follow, and 204 tells EventSource to stop reconnecting.
		if o, err := s.Get(r.Context(), id); err == nil && o.Terminal() && o.Version <= last {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	stream, err := sse.Start(w)
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer stream.KeepAlive(ctx, keepAlive, cancel)() // stopped before the handler returns
	s.streamChanges(ctx, stream, id, last, changes)
}

// streamChanges sends order id's changes, starting with changes, then each
// one committed after version last, until the order ends, the client
// leaves or a keep-alive fails (ctx ends).
func (s *Service) streamChanges(ctx context.Context, stream *sse.Writer, id string, last int, changes []Change) {
	var err error
	for {
		for _, c := range changes {
			if err := stream.Event(strconv.Itoa(c.Version), c.Type, c.Order); err != nil {
				return
			}
			last = c.Version
			if c.Type == event.OrderCompleted || c.Type == event.OrderCancelled {
				return
			}
		}
		woken, stop := s.changes.watch(id) // before reading: no lost wake-up
		if changes, err = changesAfter(ctx, s.db, id, last); err != nil {
			stop()
			return
		}
		if len(changes) > 0 {
			stop()
			continue
		}
		select {
		case <-woken:
		case <-time.After(recheck):
		case <-ctx.Done(): // the client left, or a keep-alive failed
			stop()
			return
		}
		stop()
		if changes, err = changesAfter(ctx, s.db, id, last); err != nil {
			return
		}
	}
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	page, err := httpx.ParsePage(r, 50, 500)
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	status := r.URL.Query().Get("status")
	switch status {
	case "", Pending, Confirmed, Shipped, Completed, Cancelled:
	default:
		httpx.Error(w, r, s.log, apperr.Invalidf("status", "must be one of pending, confirmed, shipped, completed, cancelled"))
		return
	}
	customer := r.URL.Query().Get("customer_id")
	// A customer lists its own orders; admin lists anyone's (or all).
	if caller := identity.From(r.Context()); !caller.Has(identity.Admin) {
		if customer != "" && customer != caller.Subject {
			httpx.Error(w, r, s.log, apperr.New(apperr.Forbidden, "customer_id", "you may list only your own orders (%q)", caller.Subject))
			return
		}
		customer = caller.Subject
		if customer == "" {
			httpx.Error(w, r, s.log, apperr.New(apperr.Unauthorized, "", "listing orders needs an authenticated caller"))
			return
		}
	}
	orders, err := s.listOrders(r.Context(), customer, status, page)
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	orders = httpx.Finish(w, r, page, orders, func(o Order) (int64, string) { return o.CreatedAt.UnixMicro(), o.ID })
	httpx.JSON(w, http.StatusOK, orders)
}

func (s *Service) handleCancel(w http.ResponseWriter, r *http.Request) {
	if err := s.owned(r); err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	o, err := s.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	httpx.JSON(w, http.StatusAccepted, o)
}

// owned checks that the caller may see the order in the path: its own, or
// any with admin (no query then). Another customer's order is "not found",
// so ids cannot be probed.
func (s *Service) owned(r *http.Request) error {
	caller := identity.From(r.Context())
	if caller.Has(identity.Admin) {
		return nil
	}
	id := r.PathValue("id")
	customer, err := customerOf(r.Context(), s.db, id)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !caller.Owns(customer)) {
		return apperr.New(apperr.NotFound, "", "order %s not found", id)
	}
	return err
}
