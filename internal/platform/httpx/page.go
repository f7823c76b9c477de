package httpx

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ordermesh/ordermesh/internal/apperr"
)

// Page is one page of a list ordered newest first by (time, id): at most
// Limit items after the item the cursor names.
type Page struct {
	Limit int
	// After is the last item of the previous page; zero on the first.
	AfterUS int64
	AfterID string
}

// First reports whether p is the first page.
func (p Page) First() bool { return p.AfterID == "" }

// ParsePage reads ?limit (1 to max, default def) and ?cursor, an opaque
// value the previous page's Link header gave.
func ParsePage(r *http.Request, def, max int) (Page, error) {
	p := Page{Limit: def}
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > max {
			return Page{}, apperr.Invalidf("limit", "must be a number from 1 to %d", max)
		}
		p.Limit = n
	}
	if c := q.Get("cursor"); c != "" {
		raw, err := base64.RawURLEncoding.DecodeString(c)
		us, id, ok := strings.Cut(string(raw), ".")
		n, perr := strconv.ParseInt(us, 10, 64)
		if err != nil || !ok || perr != nil || id == "" || len(id) > 200 {
			return Page{}, apperr.Invalidf("cursor", "not a cursor from this list's Link header")
		}
		p.AfterUS, p.AfterID = n, id
	}
	return p, nil
}

// Where extends a query whose conditions end its WHERE clause with the
// page's: the items after the cursor, by columns created_us and id
// (newest first), and the limit as its last argument, for a query that
// ends "ORDER BY created_us DESC, id DESC LIMIT ?". It asks for one item
// more than the page holds, so that Finish knows whether another page
// follows.
func (p Page) Where(q string, args []any) (string, []any) {
	if !p.First() {
		q += " AND (created_us < ? OR (created_us = ? AND id < ?))"
		args = append(args, p.AfterUS, p.AfterUS, p.AfterID)
	}
	return q, append(args, p.Limit+1)
}

// Finish trims items, as a query extended by Where returned them, to the
// page, and adds the RFC 8288 Link to the next page when there is one
// (an exactly full last page has none): the same request with a cursor
// after the page's last item, whose (created_us, id) at gives.
func Finish[T any](w http.ResponseWriter, r *http.Request, p Page, items []T, at func(T) (int64, string)) []T {
	if len(items) <= p.Limit {
		return items
	}
	items = items[:p.Limit]
	us, id := at(items[len(items)-1])
	q := r.URL.Query()
	q.Set("cursor", base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(us, 10)+"."+id)))
	q.Set("limit", strconv.Itoa(p.Limit))
	next := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	w.Header().Add("Link", "<"+next.String()+`>; rel="next"`)
	return items
}
