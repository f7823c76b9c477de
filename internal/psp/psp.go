// Package psp is a payment-provider simulator: the stand-in for an external
// card processor. It authorizes, captures, voids and refunds over HTTP,
// honours Idempotency-Key per operation, keeps a ledger, and can be told to
// fail (503s), hang past the caller's timeout (after doing the work), or be
// slow, so the payments service's resilience can be exercised.
package psp

import (
	"bytes"
	"context"
	"crypto/subtle"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/stdwebhook"
	"github.com/ordermesh/ordermesh/internal/pspapi"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the provider's ledger schema.
func Migrations() sqldb.Migrations { return sqldb.Embedded("psp", migrations) }

// Test tokens.
const (
	TokenOK                = "tok_ok"
	TokenDecline           = "tok_decline"
	TokenInsufficientFunds = "tok_insufficient_funds"
)

// Faults configures the simulator's misbehaviour.
type Faults struct {
	ErrorRate   float64       // share of requests answered 503 without effect
	TimeoutRate float64       // share of requests that take effect, then hang for Hang
	Hang        time.Duration // how long a "timeout" hangs; longer than the client's timeout
	Latency     time.Duration // added to every request
}

// Config configures the simulator.
type Config struct {
	Faults
	// Async makes authorizations answer "pending"; the outcome is sent
	// later as a signed Standard Webhooks call to NotifyURL, retried until
	// it is acknowledged.
	Async bool
	// NotifyURL is the merchant's webhook base URL (payments), which gets
	// POST /api/psp/webhooks.
	NotifyURL string
	// Secret signs those webhooks (whsec_…), shared with payments.
	Secret string
	// APIKey is the credential callers of the provider API must send as
	// `Authorization: Bearer KEY`, as a real provider requires its
	// merchant's secret key. Empty refuses every call.
	APIKey string
}

// Server is the simulator.
type Server struct {
	db     *sqldb.DB
	cfg    Config
	faults Faults
	log    *slog.Logger
	wake   chan struct{}
	client *http.Client
}

// New returns a simulator keeping its ledger in db; a nil log means
// slog.Default, as for the services.
func New(db *sqldb.DB, cfg Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	if cfg.Hang <= 0 {
		cfg.Hang = 5 * time.Second
	}
	return &Server{db: db, cfg: cfg, faults: cfg.Faults, log: log, wake: make(chan struct{}, 1),
		client: &http.Client{Timeout: 5 * time.Second}}
}

// Routes mounts the provider's admin ledger on mux: ordermesh's view of
// the outside system, behind the gateway's admin scope.
func (s *Server) Routes(mux *http.ServeMux) { httpx.Mount(mux, s.API()) }

// API is the ledger route with its policy (s may be nil to read it).
func (s *Server) API() []httpx.Route {
	return []httpx.Route{httpx.Route{Class: "admin", Scope: identity.Admin}.With("GET /api/admin/psp/ledger", s.handleLedger)}
}

// ProviderAPI is the provider's own API (POST /psp/v1/{op}), for a
// listener of its own: it stands for an outside system, so it is never
// mounted beside ordermesh's API. Every call needs Config.APIKey.
func (s *Server) ProviderAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /psp/v1/{op}", s.handleOp)
	return mux
}

func (s *Server) handleOp(w http.ResponseWriter, r *http.Request) {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if s.cfg.APIKey == "" || !strings.EqualFold(scheme, "Bearer") ||
		subtle.ConstantTimeCompare([]byte(cred), []byte(s.cfg.APIKey)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="psp"`)
		httpx.Error(w, r, s.log, apperr.New(apperr.Unauthorized, "Authorization", "the provider API needs `Authorization: Bearer KEY` with the provider's API key"))
		return
	}
	op := r.PathValue("op")
	if op != pspapi.OpAuthorize && op != pspapi.OpCapture && op != pspapi.OpVoid && op != pspapi.OpRefund {
		httpx.Error(w, r, s.log, apperr.New(apperr.NotFound, "", "no operation %q", op))
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > 200 {
		httpx.Error(w, r, s.log, apperr.Invalidf("Idempotency-Key", "header is required (1-200 characters)"))
		return
	}
	var req pspapi.Request
	if err := httpx.Decode(r, &req); err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	if req.OrderID == "" {
		httpx.Error(w, r, s.log, apperr.Invalidf("order_id", "is required"))
		return
	}
	if s.faults.Latency > 0 {
		time.Sleep(s.faults.Latency)
	}
	if rand.Float64() < s.faults.ErrorRate {
		httpx.Error(w, r, s.log, apperr.New(apperr.Unavailable, "", "simulated provider outage"))
		return
	}
	res, err := s.apply(r.Context(), op, key, req)
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	if rand.Float64() < s.faults.TimeoutRate {
		// The operation took effect; the caller will not hear of it in time.
		select {
		case <-time.After(s.faults.Hang):
		case <-r.Context().Done():
			return
		}
	}
	httpx.JSON(w, http.StatusOK, res)
}

// apply performs op once per (op, key): a repeat returns the first answer.
func (s *Server) apply(ctx context.Context, op, key string, req pspapi.Request) (pspapi.Operation, error) {
	var res pspapi.Operation
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		if res, err = s.find(ctx, tx, op, key); err == nil || !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		res = pspapi.Operation{Op: op, OrderID: req.OrderID, AmountCents: req.AmountCents, Currency: req.Currency, At: time.Now().UTC()}
		if err := s.decide(ctx, tx, &res, req.Token); err != nil {
			return err
		}
		if res.ID, err = insertOperation(ctx, tx, key, res); err != nil {
			return err
		}
		if !s.cfg.Async || op != pspapi.OpAuthorize {
			return nil
		}
		// The ledger holds the outcome; the caller hears "pending" now and
		// the outcome by webhook, from a row written in this transaction.
		payload, _ := json.Marshal(map[string]any{
			"type": "authorization.completed", "timestamp": res.At.Format(time.RFC3339Nano), "data": res,
		})
		if err := insertNotification(ctx, tx, payload, res.At); err != nil {
			return err
		}
		tx.OnCommit(func() {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		})
		res.Outcome, res.Reason = pspapi.OutcomePending, ""
		return nil
	})
	return res, err
}

// RunNotifier sends async outcomes until ctx ends (async mode only): each
// is a Standard Webhooks POST to NotifyURL/api/psp/webhooks, retried with
// backoff until the merchant answers 2xx.
func (s *Server) RunNotifier(ctx context.Context) {
	if !s.cfg.Async {
		return
	}
	for {
		if err := s.notifyDue(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("psp notifications", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Server) notifyDue(ctx context.Context) error {
	due, err := dueNotifications(ctx, s.db, time.Now(), 100)
	if err != nil {
		return err
	}
	for _, n := range due {
		if s.send(ctx, fmt.Sprintf("psp_evt_%d", n.id), []byte(n.payload)) {
			if err := markNotified(ctx, s.db, n.id); err != nil {
				return err
			}
			continue
		}
		backoff := min(time.Duration(1<<min(n.attempts, 8))*200*time.Millisecond, 30*time.Second)
		if err := retryNotification(ctx, s.db, n.id, time.Now().Add(backoff)); err != nil {
			return err
		}
	}
	return nil
}

// send posts one signed notification and reports whether it was accepted.
func (s *Server) send(ctx context.Context, id string, body []byte) bool {
	headers, err := stdwebhook.Sign(s.cfg.Secret, id, time.Now(), body)
	if err != nil {
		s.log.Error("psp webhook secret", "err", err)
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.NotifyURL+"/api/psp/webhooks", bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

func (s *Server) handleLedger(w http.ResponseWriter, r *http.Request) {
	ops, err := s.Ledger(r.Context(), r.URL.Query().Get("order_id"))
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, ops)
}
