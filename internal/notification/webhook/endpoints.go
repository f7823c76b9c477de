package webhook

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/stdwebhook"
)

// Endpoint is a merchant's webhook endpoint. Secret is only shown when it
// is created or rotated.
type Endpoint struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	EventTypes     []string `json:"event_types"`
	Description    string   `json:"description"`
	Disabled       bool     `json:"disabled"`
	DisabledReason string   `json:"disabled_reason,omitempty"`
	// Breaker is the endpoint's circuit breaker in the process that
	// answers: closed, open (deliveries wait) or half-open.
	Breaker   string    `json:"breaker,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Secret    string    `json:"secret,omitempty"`

	secret, previous string
	previousUntil    time.Time
	failingSince     time.Time
}

// EndpointInput is the body of POST and PATCH /api/webhooks/endpoints.
type EndpointInput struct {
	URL         *string   `json:"url"`
	EventTypes  *[]string `json:"event_types"`
	Description *string   `json:"description"`
	Disabled    *bool     `json:"disabled"`
}

func (s *Service) validateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return apperr.Invalidf("url", "must be an absolute http:// or https:// URL without credentials")
	}
	if len(raw) > 2000 {
		return apperr.Invalidf("url", "must be at most 2000 characters")
	}
	host := u.Hostname()
	if strings.Contains(host, "%") && !s.cfg.AllowPrivate {
		// A zone names a local interface: only link-local and other
		// non-routable addresses have one.
		return apperr.Invalidf("url", "%s names a network interface (an IPv6 zone); webhooks go to public addresses only", host)
	}
	if ip, err := netip.ParseAddr(host); err == nil && !s.cfg.AllowPrivate && !Vetted(ip) {
		return apperr.Invalidf("url", "%s is a private, loopback, link-local or reserved address; for local testing, start the notifications service with --webhook-allow-private", ip)
	}
	return nil
}

func validateTypes(types []string) error {
	if len(types) == 0 {
		return apperr.Invalidf("event_types", "must name at least one event type")
	}
	for i, t := range types {
		if !slices.Contains(event.Types, t) {
			return apperr.Invalidf(fmt.Sprintf("event_types[%d]", i), "unknown event type %q", t)
		}
		if maxPayloadBytes[t] > maxPayload {
			return apperr.Invalidf(fmt.Sprintf("event_types[%d]", i), "%s payloads can exceed 256 KiB and are never truncated", t)
		}
	}
	return nil
}

// CreateEndpoint registers an endpoint and returns it with its secret.
// Errors: Invalid.
func (s *Service) CreateEndpoint(ctx context.Context, in EndpointInput) (Endpoint, error) {
	if in.URL == nil {
		return Endpoint{}, apperr.Invalidf("url", "is required")
	}
	if err := s.validateURL(*in.URL); err != nil {
		return Endpoint{}, err
	}
	if in.EventTypes == nil {
		return Endpoint{}, apperr.Invalidf("event_types", "is required")
	}
	if err := validateTypes(*in.EventTypes); err != nil {
		return Endpoint{}, err
	}
	if in.Disabled != nil {
		return Endpoint{}, apperr.Invalidf("disabled", "cannot be set on creation")
	}
	desc := ""
	if in.Description != nil {
		desc = *in.Description
	}
	if len(desc) > 500 {
		return Endpoint{}, apperr.Invalidf("description", "must be at most 500 characters")
	}
	if err := s.widen(ctx, *in.EventTypes); err != nil {
		return Endpoint{}, err
	}
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		return Endpoint{}, err
	}
	id, _ := uuid.NewV7()
	e := Endpoint{ID: "ep_" + id.String(), URL: *in.URL, EventTypes: *in.EventTypes, Description: desc,
		CreatedAt: s.cfg.Now().UTC(), Secret: secret}
	if err := insertEndpoint(ctx, s.db, e); err != nil {
		return Endpoint{}, fmt.Errorf("create endpoint: %w", err)
	}
	return e, nil
}

// Endpoint returns one endpoint without its secret. Errors: NotFound.
func (s *Service) Endpoint(ctx context.Context, id string) (Endpoint, error) {
	e, err := loadEndpoint(ctx, s.db, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Endpoint{}, apperr.New(apperr.NotFound, "id", "no webhook endpoint %s", id)
	}
	return e, err
}

// UpdateEndpoint changes the given fields. Errors: Invalid, NotFound.
func (s *Service) UpdateEndpoint(ctx context.Context, id string, in EndpointInput) (Endpoint, error) {
	e, err := s.Endpoint(ctx, id)
	if err != nil {
		return Endpoint{}, err
	}
	if in.URL != nil {
		if err := s.validateURL(*in.URL); err != nil {
			return Endpoint{}, err
		}
		e.URL = *in.URL
	}
	if in.EventTypes != nil {
		if err := validateTypes(*in.EventTypes); err != nil {
			return Endpoint{}, err
		}
		e.EventTypes = *in.EventTypes
	}
	if in.Description != nil {
		if len(*in.Description) > 500 {
			return Endpoint{}, apperr.Invalidf("description", "must be at most 500 characters")
		}
		e.Description = *in.Description
	}
	if in.Disabled != nil {
		e.Disabled = *in.Disabled
		if !e.Disabled {
			e.DisabledReason, e.failingSince = "", time.Time{}
		} else if e.DisabledReason == "" {
			e.DisabledReason = "disabled by request"
		}
	}
	if !e.Disabled {
		if err := s.widen(ctx, e.EventTypes); err != nil {
			return Endpoint{}, err
		}
	}
	err = updateEndpoint(ctx, s.db, e)
	if err == nil {
		s.narrow(ctx)
	}
	return e, err
}

// DeleteEndpoint removes an endpoint and its pending deliveries.
// Errors: NotFound.
func (s *Service) DeleteEndpoint(ctx context.Context, id string) error {
	defer s.narrow(ctx)
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		n, err := deleteEndpoint(ctx, tx, id)
		if err != nil {
			return err
		}
		if n == 0 {
			return apperr.New(apperr.NotFound, "id", "no webhook endpoint %s", id)
		}
		return failPending(ctx, tx, id)
	})
}

// RotateSecret gives the endpoint a new secret; the old one keeps signing
// (beside the new) for the grace period. Errors: NotFound.
func (s *Service) RotateSecret(ctx context.Context, id string) (Endpoint, error) {
	e, err := s.Endpoint(ctx, id)
	if err != nil {
		return Endpoint{}, err
	}
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		return Endpoint{}, err
	}
	until := s.cfg.Now().Add(s.cfg.SecretGrace)
	err = rotateSecret(ctx, s.db, id, secret, e.secret, until)
	e.Secret = secret
	return e, err
}

// signingSecrets are the secrets that sign a delivery now.
func (e Endpoint) signingSecrets(now time.Time) []string {
	if e.previous != "" && now.Before(e.previousUntil) {
		return []string{e.secret, e.previous}
	}
	return []string{e.secret}
}
