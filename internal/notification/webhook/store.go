package webhook

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// The webhooks' tables (webhook_endpoints, webhook_deliveries,
// webhook_attempts): every query of the package.

const endpointColumns = "id, url, event_types, description, secret, previous_secret, previous_until_us, disabled, disabled_reason, failing_since_us, created_us"

func scanEndpoint(row interface{ Scan(...any) error }) (Endpoint, error) {
	var (
		e                           Endpoint
		types                       string
		prevUntil, failing, created int64
		disabled                    int
	)
	if err := row.Scan(&e.ID, &e.URL, &types, &e.Description, &e.secret, &e.previous, &prevUntil, &disabled,
		&e.DisabledReason, &failing, &created); err != nil {
		return Endpoint{}, err
	}
	json.Unmarshal([]byte(types), &e.EventTypes)
	e.Disabled = disabled == 1
	e.previousUntil = time.UnixMicro(prevUntil)
	if failing > 0 {
		e.failingSince = time.UnixMicro(failing)
	}
	e.CreatedAt = time.UnixMicro(created).UTC()
	return e, nil
}

// Endpoints lists every endpoint.
func (s *Service) Endpoints(ctx context.Context) ([]Endpoint, error) {
	rows, err := s.db.Query(ctx, "SELECT "+endpointColumns+" FROM webhook_endpoints ORDER BY created_us")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Endpoint{}
	for rows.Next() {
		e, err := scanEndpoint(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// Deliveries lists deliveries, newest first, filtered by status and
// endpoint when given, each with its attempts. One statement reads both,
// so a delivery's status and its attempts are from the same moment.
func (s *Service) Deliveries(ctx context.Context, f DeliveryFilter, page httpx.Page) ([]Delivery, error) {
	q := "SELECT id, endpoint_id, event_id, event_type, status, next_attempt_us, created_us FROM webhook_deliveries WHERE 1 = 1"
	var args []any
	if f.Status != "" {
		q += " AND status = ?"
		args = append(args, f.Status)
	}
	if f.EndpointID != "" {
		q += " AND endpoint_id = ?"
		args = append(args, f.EndpointID)
	}
	if len(f.EventIDs) > 0 {
		q += " AND event_id IN (" + sqldb.Placeholders(len(f.EventIDs)) + ")"
		for _, id := range f.EventIDs {
			args = append(args, id)
		}
	}
	q, args = page.Where(q, args)
	q = `SELECT d.id, d.endpoint_id, d.event_id, d.event_type, d.status, d.next_attempt_us, d.created_us,
		a.at_us, a.status_code, a.latency_ms, a.error, a.response
		FROM (` + q + ` ORDER BY created_us DESC, id DESC LIMIT ?) d
		LEFT JOIN webhook_attempts a ON a.delivery_id = d.id
		ORDER BY d.created_us DESC, d.id DESC, a.n`
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Delivery{}
	for rows.Next() {
		var d Delivery
		var next, created int64
		var at, code, latency sql.NullInt64
		var errText, response sql.NullString
		if err := rows.Scan(&d.ID, &d.EndpointID, &d.EventID, &d.EventType, &d.Status, &next, &created,
			&at, &code, &latency, &errText, &response); err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1].ID != d.ID {
			d.NextAttempt, d.CreatedAt = time.UnixMicro(next).UTC(), time.UnixMicro(created).UTC()
			d.Attempts = []Attempt{}
			out = append(out, d)
		}
		if at.Valid {
			last := &out[len(out)-1]
			last.Attempts = append(last.Attempts, Attempt{At: time.UnixMicro(at.Int64).UTC(), StatusCode: int(code.Int64),
				LatencyMS: latency.Int64, Error: errText.String, Response: response.String})
		}
	}
	return out, rows.Err()
}

type subscription struct {
	id    string
	types []string
}

// enabledEndpoints lists the enabled endpoints and their event types,
// through query (the read pool's or a transaction's).
func enabledEndpoints(ctx context.Context, query func(context.Context, string, ...any) (*sql.Rows, error)) ([]subscription, error) {
	rows, err := query(ctx, "SELECT id, event_types FROM webhook_endpoints WHERE disabled = 0")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var eps []subscription
	for rows.Next() {
		var ep subscription
		var types string
		if err := rows.Scan(&ep.id, &types); err != nil {
			return nil, err
		}
		_ = json.Unmarshal([]byte(types), &ep.types) // written by CreateEndpoint; unreadable matches nothing
		eps = append(eps, ep)
	}
	return eps, rows.Err()
}

// execer runs a statement: the database's write pool, or a transaction.
type execer interface {
	Exec(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// insertDelivery queues one delivery of ev to endpoint ep, due at due; a
// second delivery of the same meaning to ep is dropped.
func insertDelivery(ctx context.Context, tx *sqldb.Tx, id, ep string, ev bus.Event, body []byte, meaning *string, now, due time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload, status, next_attempt_us, created_us, traceparent, meaning)
		VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		id, ep, ev.ID, ev.Type, string(body), due.UnixMicro(), now.UnixMicro(), ev.TraceParent, meaning)
	return err
}

// dueDeliveries are up to limit pending deliveries due by now, the most
// overdue first.
func dueDeliveries(ctx context.Context, q sqldb.Querier, now time.Time, limit int) ([]due, error) {
	rows, err := q.Query(ctx, `SELECT id, endpoint_id, event_id, event_type, payload, attempts, traceparent FROM webhook_deliveries
		WHERE status = 'pending' AND next_attempt_us <= ? ORDER BY next_attempt_us LIMIT ?`, now.UnixMicro(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var batch []due
	for rows.Next() {
		var x due
		var payload string
		if err := rows.Scan(&x.id, &x.endpointID, &x.eventID, &x.eventType, &payload, &x.attempts, &x.traceparent); err != nil {
			return nil, err
		}
		x.payload = []byte(payload)
		batch = append(batch, x)
	}
	return batch, rows.Err()
}

// nextDueUS is when the next pending delivery is due (unix µs), 0 if none.
func nextDueUS(ctx context.Context, q sqldb.Querier) (int64, error) {
	var us int64
	err := q.QueryRow(ctx, "SELECT COALESCE(MIN(next_attempt_us), 0) FROM webhook_deliveries WHERE status = 'pending'").Scan(&us)
	return us, err
}

// stillDue reports whether x is still pending and due, with the attempts
// it was read with.
func stillDue(ctx context.Context, q sqldb.Querier, x due, now time.Time) (bool, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT COUNT(*) FROM webhook_deliveries
		WHERE id = ? AND status = 'pending' AND attempts = ? AND next_attempt_us <= ?`, x.id, x.attempts, now.UnixMicro()).Scan(&n)
	return n > 0, err
}

// failDelivery ends delivery id as failed after attempts.
func failDelivery(ctx context.Context, q execer, id string, attempts int) error {
	_, err := q.Exec(ctx, "UPDATE webhook_deliveries SET status = 'failed', attempts = ? WHERE id = ?", attempts, id)
	return err
}

// deliveredAt ends delivery id as delivered at its attempt n.
func deliveredAt(ctx context.Context, tx *sqldb.Tx, id string, n int) error {
	_, err := tx.Exec(ctx, "UPDATE webhook_deliveries SET status = 'delivered', attempts = ? WHERE id = ?", n, id)
	return err
}

// retryAt records n attempts of delivery id and schedules the next at next.
func retryAt(ctx context.Context, tx *sqldb.Tx, id string, n int, next time.Time) error {
	_, err := tx.Exec(ctx, "UPDATE webhook_deliveries SET attempts = ?, next_attempt_us = ? WHERE id = ?", n, next.UnixMicro(), id)
	return err
}

// postpone moves delivery id's next attempt to at, spending no attempt.
func postpone(ctx context.Context, q execer, id string, at time.Time) error {
	_, err := q.Exec(ctx, "UPDATE webhook_deliveries SET next_attempt_us = ? WHERE id = ?", at.UnixMicro(), id)
	return err
}

// insertAttempt logs attempt n of delivery id (once: a repeat is dropped).
func insertAttempt(ctx context.Context, tx *sqldb.Tx, id string, n int, at time.Time, res attemptResult, errText string) error {
	_, err := tx.Exec(ctx, `INSERT INTO webhook_attempts (delivery_id, n, at_us, status_code, latency_ms, error, response)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (delivery_id, n) DO NOTHING`,
		id, n, at.UnixMicro(), res.status, res.latency.Milliseconds(), errText, res.response)
	return err
}

// setFailingSince records since when endpoint id has failed; the zero time
// says it no longer does.
func setFailingSince(ctx context.Context, tx *sqldb.Tx, id string, since time.Time) error {
	if since.IsZero() {
		_, err := tx.Exec(ctx, "UPDATE webhook_endpoints SET failing_since_us = 0 WHERE id = ? AND failing_since_us <> 0", id)
		return err
	}
	_, err := tx.Exec(ctx, "UPDATE webhook_endpoints SET failing_since_us = ? WHERE id = ?", since.UnixMicro(), id)
	return err
}

// disableEndpoint disables endpoint id, saying why.
func disableEndpoint(ctx context.Context, tx *sqldb.Tx, id, reason string) error {
	_, err := tx.Exec(ctx, "UPDATE webhook_endpoints SET disabled = 1, disabled_reason = ? WHERE id = ?", reason, id)
	return err
}

// insertEndpoint stores a new endpoint with its secret.
func insertEndpoint(ctx context.Context, q execer, e Endpoint) error {
	types, _ := json.Marshal(e.EventTypes)
	_, err := q.Exec(ctx, `INSERT INTO webhook_endpoints (id, url, event_types, description, secret, created_us)
		VALUES (?, ?, ?, ?, ?, ?)`, e.ID, e.URL, string(types), e.Description, e.Secret, e.CreatedAt.UnixMicro())
	return err
}

// loadEndpoint reads endpoint id, or sql.ErrNoRows.
func loadEndpoint(ctx context.Context, q sqldb.Querier, id string) (Endpoint, error) {
	return scanEndpoint(q.QueryRow(ctx, "SELECT "+endpointColumns+" FROM webhook_endpoints WHERE id = ?", id))
}

// updateEndpoint writes e's settings and state (not its secrets).
func updateEndpoint(ctx context.Context, q execer, e Endpoint) error {
	types, _ := json.Marshal(e.EventTypes)
	_, err := q.Exec(ctx, `UPDATE webhook_endpoints SET url = ?, event_types = ?, description = ?, disabled = ?,
		disabled_reason = ?, failing_since_us = ? WHERE id = ?`, e.URL, string(types), e.Description, sqldb.BoolInt(e.Disabled),
		e.DisabledReason, micros(e.failingSince), e.ID)
	return err
}

// deleteEndpoint removes endpoint id and says how many rows went (0 or 1).
func deleteEndpoint(ctx context.Context, tx *sqldb.Tx, id string) (int64, error) {
	res, err := tx.Exec(ctx, "DELETE FROM webhook_endpoints WHERE id = ?", id)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// failPending ends every pending delivery of endpoint id as failed.
func failPending(ctx context.Context, tx *sqldb.Tx, id string) error {
	_, err := tx.Exec(ctx, "UPDATE webhook_deliveries SET status = 'failed' WHERE endpoint_id = ? AND status = 'pending'", id)
	return err
}

// rotateSecret makes secret endpoint id's, with previous signing beside it
// until until.
func rotateSecret(ctx context.Context, q execer, id, secret, previous string, until time.Time) error {
	_, err := q.Exec(ctx, "UPDATE webhook_endpoints SET secret = ?, previous_secret = ?, previous_until_us = ? WHERE id = ?",
		secret, previous, until.UnixMicro(), id)
	return err
}

// deliveryEndpoint is the endpoint of delivery id, or sql.ErrNoRows.
func deliveryEndpoint(ctx context.Context, q sqldb.Querier, id string) (string, error) {
	var ep string
	err := q.QueryRow(ctx, "SELECT endpoint_id FROM webhook_deliveries WHERE id = ?", id).Scan(&ep)
	return ep, err
}

// retryNow makes delivery id pending and due now, unless it was
// delivered; it says whether it did (0 or 1).
func retryNow(ctx context.Context, q execer, id string, now time.Time) (int64, error) {
	res, err := q.Exec(ctx, "UPDATE webhook_deliveries SET status = 'pending', next_attempt_us = ? WHERE id = ? AND status <> 'delivered'",
		now.UnixMicro(), id)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// recoverSince makes due now every undelivered delivery of endpoint id
// created since since: the failed ones (made pending again) and the ones
// waiting for a later attempt. It returns how many of each.
func recoverSince(ctx context.Context, tx *sqldb.Tx, id string, since, now time.Time) (failed, waiting int64, err error) {
	res, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET status = 'pending', next_attempt_us = ?
		WHERE endpoint_id = ? AND status = 'failed' AND created_us >= ?`, now.UnixMicro(), id, since.UnixMicro())
	if err != nil {
		return 0, 0, err
	}
	if failed, err = res.RowsAffected(); err != nil {
		return 0, 0, err
	}
	res, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET next_attempt_us = ?
		WHERE endpoint_id = ? AND status = 'pending' AND next_attempt_us > ? AND created_us >= ?`, now.UnixMicro(), id, now.UnixMicro(), since.UnixMicro())
	if err != nil {
		return 0, 0, err
	}
	waiting, err = res.RowsAffected()
	return failed, waiting, err
}
