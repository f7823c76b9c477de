// Package httpx holds ordermesh's HTTP plumbing: JSON responses, RFC 9457
// problem+json errors mapped from apperr kinds in one function, and a
// strict JSON request decoder.
package httpx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/ordermesh/ordermesh/internal/apperr"
)

// MaxBody is the largest request body accepted (1 MiB).
const MaxBody = 1 << 20

// Status maps an error to its HTTP status: the one place that does.
func Status(err error) int {
	switch apperr.KindOf(err) {
	case apperr.Invalid:
		return http.StatusBadRequest
	case apperr.NotFound:
		return http.StatusNotFound
	case apperr.Conflict:
		return http.StatusConflict
	case apperr.Unprocessable:
		return http.StatusUnprocessableEntity
	case apperr.Unavailable:
		return http.StatusServiceUnavailable
	case apperr.TooLarge:
		return http.StatusRequestEntityTooLarge
	case apperr.Unsupported:
		return http.StatusUnsupportedMediaType
	case apperr.Unauthorized:
		return http.StatusUnauthorized
	case apperr.Forbidden:
		return http.StatusForbidden
	case apperr.TooManyRequests:
		return http.StatusTooManyRequests
	case apperr.MethodNotAllowed:
		return http.StatusMethodNotAllowed
	default:
		return http.StatusInternalServerError
	}
}

// Problem is an RFC 9457 problem details body, with the offending field.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	Field    string `json:"field,omitempty"`
}

// Error writes err as application/problem+json. Internal errors are logged
// and answered without their details.
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody is left to read an answer.
		log.Debug("client gone", "method", r.Method, "path", r.URL.Path)
		return
	}
	status := Status(err)
	p := Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Instance: r.URL.Path}
	if e, ok := apperr.As(err); ok && status != http.StatusInternalServerError {
		p.Detail, p.Field = e.Error(), e.Field
	} else {
		log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		p.Detail = "internal error; it has been logged"
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(p)
}

// JSON writes v as JSON with status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Decode reads the request body into dst strictly: Content-Type must be
// application/json, the body at most MaxBody, one JSON value, no unknown
// fields. Errors are apperr errors naming the field where there is one.
func Decode(r *http.Request, dst any) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return apperr.New(apperr.Unsupported, "", "Content-Type must be application/json, got %q", ct)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBody))
	if err != nil {
		return decodeError(err)
	}
	return DecodeBytes(raw, dst)
}

// DecodeBytes is Decode for a body already read: one JSON value, no
// unknown fields, and nothing CheckJSON refuses (repeated keys, nulls,
// control characters).
func DecodeBytes(raw []byte, dst any) error {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nullBody(dst)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apperr.Invalidf("", "body must hold a single JSON value")
	}
	return CheckJSON(raw)
}

// nullBody is the error for a body that is JSON null: an object was
// expected, and the error names its first required field, as the
// request type's own Validate says (or its first field that is not
// optional).
func nullBody(dst any) error {
	if v, ok := dst.(interface{ Validate() error }); ok {
		if e, ok := apperr.As(v.Validate()); ok && e.Field != "" {
			return apperr.Invalidf(e.Field, "the body is null; send a JSON object with %s", e.Field)
		}
	}
	t := reflect.TypeOf(dst)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && t.Kind() == reflect.Struct {
		for i := range t.NumField() {
			name, opts, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if name != "" && name != "-" && !strings.Contains(opts, "omitempty") {
				return apperr.Invalidf(name, "the body is null; send a JSON object with %s", name)
			}
		}
	}
	return apperr.Invalidf("", "the body is null; send a JSON object")
}

func decodeError(err error) error {
	var (
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
		tooBig  *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooBig):
		return apperr.New(apperr.TooLarge, "", "body is larger than %d bytes", MaxBody)
	case errors.As(err, &syntax):
		return apperr.Invalidf("", "malformed JSON at byte %d", syntax.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return apperr.Invalidf("", "body is empty or truncated JSON")
	case errors.As(err, &typeErr):
		return apperr.Invalidf(typeErr.Field, "must be %s, got %s", typeErr.Type, typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return apperr.Invalidf(field, "unknown field")
	default:
		return apperr.Invalidf("", "cannot read body: %v", err)
	}
}

// JSONWithETag writes v as JSON with a strong ETag (a hash of the body),
// or 304 Not Modified when the request's If-None-Match already names it.
func JSONWithETag(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache") // revalidate, then 304
	for _, candidate := range strings.Split(r.Header.Get("If-None-Match"), ",") {
		if c := strings.TrimSpace(candidate); c == etag || c == "*" {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(append(body, '\n'))
}
