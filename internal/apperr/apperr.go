// Package apperr is ordermesh's one application error type: a kind that
// callers match with errors.As and that httpx maps to an HTTP status in one
// place, the offending field when there is one, and a message for people.
package apperr

import (
	"errors"
	"fmt"
)

// Kind classifies an application error.
type Kind int

const (
	Internal         Kind = iota // a bug or an unexpected failure
	Invalid                      // malformed input (400)
	NotFound                     // no such resource (404)
	Conflict                     // the resource's state forbids it (409)
	Unprocessable                // well-formed but unacceptable, e.g. unknown SKU (422)
	Unavailable                  // a dependency is down; retry later (503)
	TooLarge                     // body over the limit (413)
	Unsupported                  // wrong content type (415)
	Unauthorized                 // no valid credentials (401)
	Forbidden                    // authenticated but not allowed (403)
	TooManyRequests              // over a rate limit (429)
	MethodNotAllowed             // the path exists, not with this method (405)
)

// Error is an application error.
type Error struct {
	Kind  Kind
	Field string // JSON path of the offending field, if any
	Msg   string
	Err   error // cause, if any
}

func (e *Error) Error() string {
	msg := e.Msg
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error of kind about field (may be empty).
func New(kind Kind, field, format string, args ...any) *Error {
	return &Error{Kind: kind, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Invalid reports malformed input in field.
func Invalidf(field, format string, args ...any) *Error {
	return New(Invalid, field, format, args...)
}

// KindOf returns the kind of err, Internal if it is not an *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// As returns err as an *Error if it is one.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// PermanentError marks a failure that retrying cannot fix (bad data, a
// rejected contract): a consumer dead-letters the event that caused it
// instead of retrying. See Permanent.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a failure no retry can fix. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or an error it wraps) is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}
