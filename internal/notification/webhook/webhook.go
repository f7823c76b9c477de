package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// DefaultSchedule is the Standard Webhooks recommended retry schedule: the
// delay before each attempt, the first immediate.
var DefaultSchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
	5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}

const (
	connectTimeout = 5 * time.Second
	totalTimeout   = 15 * time.Second
	maxResponse    = 4 << 10   // response bytes kept in the attempt log
	maxPayload     = 256 << 10 // larger payloads are refused at subscription
	source         = "ordermesh/notifications"
	// ConsumerName is the consumer that turns events into deliveries.
	ConsumerName = "notifications-webhooks"
)

// maxPayloadBytes bounds each event type's delivery body (the schema caps
// lines at 100 and strings at 200 characters), for the subscription check.
var maxPayloadBytes = map[string]int{event.OrderPlaced: 48 << 10, event.OrderConfirmed: 48 << 10, event.StockReserved: 40 << 10}

// Config configures the webhook service.
type Config struct {
	DB     *sqldb.DB
	Outbox *outbox.Outbox
	Logger *slog.Logger
	// Schedule is the delay before each attempt; nil means DefaultSchedule.
	Schedule []time.Duration
	// SecretGrace is how long a rotated-out secret still signs. Zero: 24h.
	SecretGrace time.Duration
	// DisableAfter disables an endpoint failing continuously this long.
	// Zero means 5 days.
	DisableAfter time.Duration
	// AllowPrivate lets endpoints resolve to loopback and private addresses.
	AllowPrivate bool
	// PerEndpoint caps concurrent deliveries to one endpoint. Zero: 4.
	PerEndpoint int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service manages endpoints and delivers to them.
type Service struct {
	cfg  Config
	db   *sqldb.DB
	log  *slog.Logger
	wake chan struct{}
	d    *dispatcher

	filterMu sync.Mutex
	filter   TypeFilter
}

// TypeFilter is the durable consumer that feeds the service, whose event
// types follow the endpoints' subscriptions (bus.Consumer).
type TypeFilter interface {
	AddTypes(ctx context.Context, types []string) error
	SetTypes(ctx context.Context, types []string) error
}

// IdleType is the one type the consumer asks for while no enabled endpoint
// subscribes to anything: no event has it, so the broker delivers nothing.
const IdleType = "webhooks.idle"

// Follow makes the consumer's event types follow the endpoints from now on:
// widened before an endpoint that wants more is stored, narrowed after one
// is deleted, disabled or changed. Without it the consumer must receive
// every type.
func (s *Service) Follow(f TypeFilter) {
	s.filterMu.Lock()
	s.filter = f
	s.filterMu.Unlock()
}

// ConsumerTypes are the event types some enabled endpoint subscribes to,
// sorted, or IdleType when none does: what the consumer should receive.
func (s *Service) ConsumerTypes(ctx context.Context) ([]string, error) {
	wanted, err := s.subscribedTypes(ctx)
	if err != nil {
		return nil, err
	}
	if len(wanted) == 0 {
		return []string{IdleType}, nil
	}
	return slices.Sorted(maps.Keys(wanted)), nil
}

// widen makes the consumer receive types before an endpoint that wants
// them is stored, so no event after its creation is missed. Errors:
// Unavailable when the broker cannot be told.
func (s *Service) widen(ctx context.Context, types []string) error {
	s.filterMu.Lock()
	defer s.filterMu.Unlock()
	if s.filter == nil {
		return nil
	}
	if err := s.filter.AddTypes(ctx, types); err != nil {
		return &apperr.Error{Kind: apperr.Unavailable, Msg: "cannot subscribe the webhook consumer to the endpoint's event types; retry", Err: err}
	}
	return nil
}

// narrow makes the consumer receive exactly the types enabled endpoints
// subscribe to now. A failure only costs deliveries nobody wants; the next
// change tries again.
func (s *Service) narrow(ctx context.Context) {
	s.filterMu.Lock()
	defer s.filterMu.Unlock()
	if s.filter == nil {
		return
	}
	types, err := s.ConsumerTypes(ctx)
	if err == nil {
		err = s.filter.SetTypes(ctx, types)
	}
	if err != nil {
		s.log.Warn("narrow the webhook consumer's event types", "err", err)
	}
}

// New returns the webhook service.
func New(cfg Config) *Service {
	if cfg.Schedule == nil {
		cfg.Schedule = DefaultSchedule
	}
	if cfg.SecretGrace <= 0 {
		cfg.SecretGrace = 24 * time.Hour
	}
	if cfg.DisableAfter <= 0 {
		cfg.DisableAfter = 5 * 24 * time.Hour
	}
	if cfg.PerEndpoint <= 0 {
		cfg.PerEndpoint = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{cfg: cfg, db: cfg.DB, log: cfg.Logger.With("component", "webhooks"), wake: make(chan struct{}, 1)}
	s.d = newDispatcher(s)
	return s
}

// Consumer turns every event into a delivery for each enabled endpoint
// subscribed to its type, in the transaction that records the event.
//
// Events that no enabled endpoint subscribes to are acknowledged without a
// transaction: there is nothing to write, and a redelivered copy is as
// harmless as the first. (Without endpoints this consumer would otherwise
// commit once for every event in the system.)
func (s *Service) Consumer() (bus.ConsumerConfig, bus.BatchHandler) {
	// Off the order's critical path: one worker that lingers, so that the
	// events of many orders share a transaction.
	// Each delivery stands on its own (Standard Webhooks promise no order),
	// so one order's events need not stay on one instance.
	cfg := bus.ConsumerConfig{Name: ConsumerName, Types: event.Types, Concurrency: 1, Linger: 20 * time.Millisecond, Unpartitioned: true}
	return cfg, bus.Skipping(inbox.BatchHandler(s.db, ConsumerName, s.enqueue), func(ctx context.Context, evs []bus.Event) ([]bool, error) {
		wanted, err := s.subscribedTypes(ctx)
		if err != nil {
			return nil, err // the transaction reads them again, and reports
		}
		skip := make([]bool, len(evs))
		for i, ev := range evs {
			skip[i] = !wanted[ev.Type]
		}
		return skip, nil
	})
}

// subscribedTypes reads the event types some enabled endpoint subscribes to.
func (s *Service) subscribedTypes(ctx context.Context) (map[string]bool, error) {
	eps, err := enabledEndpoints(ctx, s.db.Query)
	if err != nil {
		return nil, err
	}
	types := map[string]bool{}
	for _, ep := range eps {
		for _, t := range ep.types {
			types[t] = true
		}
	}
	return types, nil
}

func (s *Service) enqueue(ctx context.Context, tx *sqldb.Tx, ev bus.Event) error {
	eps, err := enabledEndpoints(ctx, tx.Query)
	if err != nil {
		return err
	}
	var targets []string
	for _, ep := range eps {
		if slices.Contains(ep.types, ev.Type) {
			targets = append(targets, ep.id)
		}
	}
	if len(targets) == 0 {
		return nil
	}
	data, err := merchantView(ev.Data)
	if err != nil {
		return bus.Permanent(fmt.Errorf("webhook payload of %s: %w", ev.Type, err))
	}
	body, err := json.Marshal(map[string]any{"type": ev.Type, "timestamp": ev.Time.UTC().Format(time.RFC3339Nano), "data": data})
	if err != nil {
		return err
	}
	var meaning *string // one delivery per endpoint, order and type
	if oncePerOrder(ev.Type) {
		m := ev.Type + " " + ev.Subject
		meaning = &m
	}
	now := s.cfg.Now()
	for _, ep := range targets {
		id, _ := uuid.NewV7()
		if err := insertDelivery(ctx, tx, "dl_"+id.String(), ep, ev, body, meaning, now, now.Add(s.cfg.Schedule[0])); err != nil {
			return err
		}
	}
	tx.OnCommit(s.Wake)
	return nil
}

// Wake makes the dispatcher look for due deliveries now.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers due deliveries until ctx ends, then waits (briefly) for
// deliveries in flight.
func (s *Service) Run(ctx context.Context) { s.d.run(ctx) }

// merchantView is an event's data as a merchant receives it: without the
// payment method, which only the payments service may hold, sealed or not.
func merchantView(data json.RawMessage) (json.RawMessage, error) {
	if !bytes.Contains(data, []byte(`"payment_`)) {
		return data, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, err
	}
	delete(fields, "payment_method")
	delete(fields, "payment_token")
	return json.Marshal(fields)
}

// oncePerOrder says whether events of type typ happen at most once per
// order, so that a second one (a copy under a fresh id) is delivered to no
// merchant.
func oncePerOrder(typ string) bool {
	return typ != event.ProductUpdated && typ != event.EndpointDisabled
}
