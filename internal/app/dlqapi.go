package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

// deadLetters is what `ordermesh dlq` does with the dead-letter queue:
// *bus.Bus does it on the broker (--nats), adminDLQ through a running
// system's admin API (--url), which needs no broker port or password.
type deadLetters interface {
	DeadLetters(ctx context.Context) ([]bus.DeadLetter, error)
	DeadLetter(ctx context.Context, id uint64) (bus.DeadLetter, error)
	Replay(ctx context.Context, id uint64) error
	PurgeDeadLetters(ctx context.Context) (uint64, error)
}

// adminDLQ is the DLQ through the gateway's /api/admin/dlq, as an admin.
type adminDLQ struct {
	base, token string
	client      *http.Client
}

func newAdminDLQ(base, token string) *adminDLQ {
	return &adminDLQ{base: strings.TrimRight(base, "/"), token: token, client: &http.Client{Timeout: 30 * time.Second}}
}

func (a *adminDLQ) DeadLetters(ctx context.Context) ([]bus.DeadLetter, error) {
	var out struct {
		DeadLetters []bus.DeadLetter `json:"dead_letters"`
	}
	err := a.call(ctx, http.MethodGet, "/api/admin/dlq", &out)
	return out.DeadLetters, err
}

func (a *adminDLQ) DeadLetter(ctx context.Context, id uint64) (bus.DeadLetter, error) {
	var out struct {
		DeadLetter bus.DeadLetter  `json:"dead_letter"`
		Data       json.RawMessage `json:"data"`
	}
	if err := a.call(ctx, http.MethodGet, "/api/admin/dlq/"+strconv.FormatUint(id, 10), &out); err != nil {
		return bus.DeadLetter{}, err
	}
	d := out.DeadLetter
	d.Data = out.Data
	var s string // data that is not JSON comes as a JSON string
	if json.Unmarshal(out.Data, &s) == nil {
		d.Data = []byte(s)
	}
	return d, nil
}

func (a *adminDLQ) Replay(ctx context.Context, id uint64) error {
	return a.call(ctx, http.MethodPost, "/api/admin/dlq/"+strconv.FormatUint(id, 10)+"/replay", nil)
}

func (a *adminDLQ) PurgeDeadLetters(ctx context.Context) (uint64, error) {
	var out struct {
		Purged uint64 `json:"purged"`
	}
	err := a.call(ctx, http.MethodDelete, "/api/admin/dlq?confirm=purge", &out)
	return out.Purged, err
}

// call sends one admin request and decodes its JSON answer into out; a
// problem+json answer becomes an error carrying its detail.
func (a *adminDLQ) call(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, nil)
	if err != nil {
		return usagef("--url %s: %v", a.base, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	res, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w (is ordermesh running there? pass --url, or --nats for the broker itself)", method, a.base+path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if res.StatusCode >= 300 {
		var p struct {
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(body, &p)
		switch res.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s", bus.ErrDeadLetterNotFound, p.Detail)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%s refused the token (%d %s): dlq needs an admin token; pass --token or --data of the `ordermesh run`", a.base, res.StatusCode, p.Detail)
		}
		return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, p.Detail)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not the admin API's JSON (is --url an ordermesh gateway?): %w", method, path, err)
	}
	return nil
}
