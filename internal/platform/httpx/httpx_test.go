package httpx_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
)

type item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
	Note     string `json:"note,omitempty"`
}

func (i item) Validate() error {
	if i.SKU == "" {
		return apperr.Invalidf("sku", "is required")
	}
	return nil
}

func decodeRequest(contentType, body string) (item, error) {
	r := httptest.NewRequest("POST", "/x", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	var it item
	err := httpx.Decode(r, &it)
	return it, err
}

// TestDecodeRefusesWhatAClientDidNotMean: every malformed body is an
// Invalid (or TooLarge, Unsupported) error naming the field where there
// is one, and a good body decodes.
func TestDecodeRefusesWhatAClientDidNotMean(t *testing.T) {
	tests := map[string]struct {
		ct, body string
		kind     apperr.Kind
		field    string
	}{
		"no content type":      {"", `{"sku":"A","quantity":1}`, apperr.Unsupported, ""},
		"text/plain":           {"text/plain", `{"sku":"A","quantity":1}`, apperr.Unsupported, ""},
		"malformed":            {"application/json", `{"sku":`, apperr.Invalid, ""},
		"empty":                {"application/json", ``, apperr.Invalid, ""},
		"wrong type":           {"application/json", `{"sku":"A","quantity":"two"}`, apperr.Invalid, "quantity"},
		"unknown field":        {"application/json", `{"sku":"A","quantity":1,"price":0}`, apperr.Invalid, "price"},
		"two values":           {"application/json", `{"sku":"A"} {"sku":"B"}`, apperr.Invalid, ""},
		"repeated key":         {"application/json", `{"sku":"A","sku":"B"}`, apperr.Invalid, "sku"},
		"null field":           {"application/json", `{"sku":null}`, apperr.Invalid, "sku"},
		"null body":            {"application/json", `null`, apperr.Invalid, "sku"},
		"control character":    {"application/json", `{"sku":"A\u0000B"}`, apperr.Invalid, "sku"},
		"too large":            {"application/json", `{"note":"` + strings.Repeat("x", httpx.MaxBody) + `"}`, apperr.TooLarge, ""},
		"charset is fine":      {"application/json; charset=utf-8", `{"sku":"A","quantity":2}`, 0, ""},
		"whitespace after one": {"application/json", "{\"sku\":\"A\",\"quantity\":2}\n  ", 0, ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			it, err := decodeRequest(tt.ct, tt.body)
			if tt.kind == 0 {
				if err != nil || it.SKU != "A" || it.Quantity != 2 {
					t.Fatalf("Decode = %+v, %v; want the item", it, err)
				}
				return
			}
			e, ok := apperr.As(err)
			if !ok || e.Kind != tt.kind || e.Field != tt.field {
				t.Fatalf("Decode(%q) = %v (%+v); want kind %v on field %q", tt.body[:min(len(tt.body), 40)], err, e, tt.kind, tt.field)
			}
		})
	}
}

// TestErrorIsProblemJSON: an apperr error is answered with its status and
// detail as problem+json naming the field; anything else is a 500 whose
// detail says nothing of the cause; a client that went away gets nothing.
func TestErrorIsProblemJSON(t *testing.T) {
	answer := func(err error) (*http.Response, httpx.Problem) {
		w := httptest.NewRecorder()
		httpx.Error(w, httptest.NewRequest("GET", "/api/orders/x", nil), slog.New(slog.DiscardHandler), err)
		var p httpx.Problem
		json.NewDecoder(w.Result().Body).Decode(&p)
		return w.Result(), p
	}
	resp, p := answer(fmt.Errorf("place: %w", apperr.Invalidf("items[0].quantity", "must be at least 1")))
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/problem+json" ||
		p.Field != "items[0].quantity" || p.Status != 400 || p.Instance != "/api/orders/x" || !strings.Contains(p.Detail, "at least 1") {
		t.Errorf("a wrapped Invalid = %d %q %+v", resp.StatusCode, resp.Header.Get("Content-Type"), p)
	}
	for kind, status := range map[apperr.Kind]int{apperr.NotFound: 404, apperr.Conflict: 409, apperr.Unprocessable: 422,
		apperr.Unavailable: 503, apperr.TooManyRequests: 429, apperr.Forbidden: 403, apperr.Unauthorized: 401} {
		if resp, _ := answer(apperr.New(kind, "", "x")); resp.StatusCode != status {
			t.Errorf("kind %v = %d, want %d", kind, resp.StatusCode, status)
		}
	}
	resp, p = answer(errors.New("pq: password authentication failed for user secret"))
	if resp.StatusCode != 500 || strings.Contains(p.Detail, "secret") {
		t.Errorf("an internal error = %d %q: its cause must not reach the client", resp.StatusCode, p.Detail)
	}
}

// TestJSONWithETagAnswers304: the same body has the same ETag, and a
// request naming it gets 304 with no body.
func TestJSONWithETagAnswers304(t *testing.T) {
	get := func(inm string) *http.Response {
		r := httptest.NewRequest("GET", "/api/products", nil)
		if inm != "" {
			r.Header.Set("If-None-Match", inm)
		}
		w := httptest.NewRecorder()
		httpx.JSONWithETag(w, r, []string{"a", "b"})
		return w.Result()
	}
	first := get("")
	etag := first.Header.Get("ETag")
	if first.StatusCode != 200 || etag == "" {
		t.Fatalf("first = %d ETag %q", first.StatusCode, etag)
	}
	again := get(`"other", ` + etag)
	body, _ := io.ReadAll(again.Body)
	if again.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("If-None-Match with the ETag = %d, %d bytes; want 304, none", again.StatusCode, len(body))
	}
	if get(`"other"`).StatusCode != 200 {
		t.Error("another ETag got 304")
	}
}

// TestOneFramingRefusesChunkedBodies: a body framed by Transfer-Encoding
// is answered 400 naming it, and the connection is closed.
func TestOneFramingRefusesChunkedBodies(t *testing.T) {
	reached := false
	h := httpx.OneFraming(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
	r := httptest.NewRequest("POST", "/api/orders", strings.NewReader("{}"))
	r.TransferEncoding = []string{"chunked"}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 400 || reached || w.Header().Get("Connection") != "close" || !strings.Contains(w.Body.String(), "Transfer-Encoding") {
		t.Errorf("chunked = %d reached %v Connection %q %s", w.Code, reached, w.Header().Get("Connection"), w.Body)
	}
}

// TestPagesWalkEveryItemOnce: following the Link header from the first
// page reaches every item exactly once, also where items share a time.
func TestPagesWalkEveryItemOnce(t *testing.T) {
	type row struct {
		us int64
		id string
	}
	var all []row // newest first, as the query orders them
	for i := 250; i > 0; i-- {
		all = append(all, row{us: int64(i / 3), id: fmt.Sprintf("id%04d", i)}) // three share each time
	}
	after := func(p httpx.Page) []row { // what "WHERE (created_us, id) < cursor ORDER BY … LIMIT n+1" returns
		var out []row
		for _, r := range all {
			if p.First() || r.us < p.AfterUS || r.us == p.AfterUS && r.id < p.AfterID {
				out = append(out, r)
			}
		}
		return out[:min(len(out), p.Limit+1)]
	}
	seen := map[string]int{}
	url := "/api/orders?limit=40"
	for pages := 0; url != ""; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		r := httptest.NewRequest("GET", url, nil)
		p, err := httpx.ParsePage(r, 100, 500)
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		for _, it := range httpx.Finish(w, r, p, after(p), func(r row) (int64, string) { return r.us, r.id }) {
			seen[it.id]++
		}
		url = ""
		if link := w.Header().Get("Link"); link != "" {
			url = link[1:strings.Index(link, ">")]
		}
	}
	if len(seen) != len(all) {
		t.Fatalf("walked %d of %d items", len(seen), len(all))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times", id, n)
		}
	}
	for _, bad := range []string{"limit=0", "limit=501", "limit=x", "cursor=!!", "cursor=" + "bm9kb3Q"} {
		if _, err := httpx.ParsePage(httptest.NewRequest("GET", "/x?"+bad, nil), 100, 500); apperr.KindOf(err) != apperr.Invalid {
			t.Errorf("?%s = %v, want Invalid", bad, err)
		}
	}
}
