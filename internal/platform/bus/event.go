package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// CloudEvents 1.0 attributes in NATS binary mode (ARCHITECTURE.md, "Events").
const (
	HeaderID          = "ce-id"
	HeaderType        = "ce-type"
	HeaderSource      = "ce-source"
	HeaderSubject     = "ce-subject"
	HeaderTime        = "ce-time"
	HeaderSpecVersion = "ce-specversion"
	// Extension attributes carry the ce- prefix like every other
	// attribute in the NATS binding, so CloudEvents SDKs see them as
	// extensions (traceparent is the Distributed Tracing extension's).
	HeaderTraceParent   = "ce-traceparent"
	HeaderCorrelationID = "ce-correlationid"
	HeaderCausationID   = "ce-causationid"
	HeaderContentType   = "content-type"

	// legacyPrefix is how many bytes of "ce-" the extension headers of
	// events stored before they carried the prefix lack; Decode reads both.
	legacyPrefix = len("ce-")

	specVersion = "1.0"
	// SubjectPrefix is prepended to an event type to form its NATS subject.
	SubjectPrefix = "events."
)

// Event is one CloudEvent: a past-tense fact with its JSON data. Subject is
// the order (or other aggregate) id the event is about.
type Event struct {
	ID            string
	Type          string
	Source        string
	Subject       string
	Time          time.Time
	TraceParent   string
	CorrelationID string
	CausationID   string
	Data          json.RawMessage
}

// NewEvent builds an event of type typ about subject, with a fresh
// time-ordered id and data encoded as JSON. The correlation id defaults to
// the event's own id; use CausedBy to continue a chain.
func NewEvent(typ, source, subject string, data any) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s data: %w", typ, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Event{}, fmt.Errorf("event id: %w", err)
	}
	return Event{
		ID:            id.String(),
		Type:          typ,
		Source:        source,
		Subject:       subject,
		Time:          time.Now().UTC(),
		CorrelationID: id.String(),
		Data:          raw,
	}, nil
}

// CausedBy returns ev as a consequence of cause: same correlation id and
// trace, causation id = cause's id.
func (ev Event) CausedBy(cause Event) Event {
	ev.CausationID = cause.ID
	if cause.CorrelationID != "" {
		ev.CorrelationID = cause.CorrelationID
	}
	if cause.TraceParent != "" {
		ev.TraceParent = cause.TraceParent
	}
	return ev
}

// NATSSubject is the subject the event is published on:
// events.<type>.<partition of its subject>.
func (ev Event) NATSSubject() string {
	return typeSubject(ev.Type, subjectPartition(ev.Subject))
}

// Msg encodes ev as a NATS message in CloudEvents binary mode, with
// Nats-Msg-Id = ce-id so the broker drops a re-publish within its
// duplicate window.
func (ev Event) Msg() *nats.Msg {
	h := nats.Header{}
	h.Set(HeaderSpecVersion, specVersion)
	h.Set(HeaderID, ev.ID)
	h.Set(HeaderType, ev.Type)
	h.Set(HeaderSource, ev.Source)
	h.Set(HeaderTime, ev.Time.UTC().Format(time.RFC3339Nano))
	h.Set(HeaderContentType, "application/json")
	h.Set(jetstream.MsgIDHeader, ev.ID)
	setIf(h, HeaderSubject, ev.Subject)
	setIf(h, HeaderTraceParent, ev.TraceParent)
	setIf(h, HeaderCorrelationID, ev.CorrelationID)
	setIf(h, HeaderCausationID, ev.CausationID)
	return &nats.Msg{Subject: ev.NATSSubject(), Header: h, Data: ev.Data}
}

func setIf(h nats.Header, k, v string) {
	if v != "" {
		h.Set(k, v)
	}
}

// ErrUndecodable is the error kind of a message that is not a valid
// CloudEvent; such messages go straight to the dead-letter stream.
var ErrUndecodable = errors.New("undecodable event")

// ErrForeignSource is the error of an event whose source is not the
// service allowed to publish its type (Config.Sources): a forgery, or a
// service that speaks for another. It is dead-lettered.
var ErrForeignSource = errors.New("event from a source not allowed to publish its type")

// Decode reads a CloudEvent from a NATS message's headers and body. It
// fails with ErrUndecodable when a required attribute is missing, the time
// is malformed, or the body is not JSON.
func Decode(h nats.Header, data []byte) (Event, error) {
	if v := h.Get(HeaderSpecVersion); v != specVersion {
		return Event{}, fmt.Errorf("%w: ce-specversion is %q, want %q", ErrUndecodable, v, specVersion)
	}
	ev := Event{
		ID:            h.Get(HeaderID),
		Type:          h.Get(HeaderType),
		Source:        h.Get(HeaderSource),
		Subject:       h.Get(HeaderSubject),
		TraceParent:   extension(h, HeaderTraceParent),
		CorrelationID: extension(h, HeaderCorrelationID),
		CausationID:   extension(h, HeaderCausationID),
		Data:          data,
	}
	switch {
	case ev.ID == "":
		return Event{}, fmt.Errorf("%w: missing ce-id", ErrUndecodable)
	case ev.Type == "":
		return Event{}, fmt.Errorf("%w: missing ce-type", ErrUndecodable)
	case ev.Source == "":
		return Event{}, fmt.Errorf("%w: missing ce-source", ErrUndecodable)
	}
	if t := h.Get(HeaderTime); t != "" {
		parsed, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return Event{}, fmt.Errorf("%w: ce-time %q: %v", ErrUndecodable, t, err)
		}
		ev.Time = parsed
	}
	if !json.Valid(data) {
		return Event{}, fmt.Errorf("%w: data of %s %s is not valid JSON", ErrUndecodable, ev.Type, ev.ID)
	}
	return ev, nil
}

// extension is the extension attribute named by header key, or, in an
// event stored before extensions carried the ce- prefix, its header without
// it.
func extension(h nats.Header, key string) string {
	if v := h.Get(key); v != "" {
		return v
	}
	return h.Get(key[legacyPrefix:])
}

// DecodeData unmarshals the event's data into dst. Data that does not fit
// dst is a permanent error: retrying cannot fix it, so the event is
// dead-lettered.
func (ev Event) DecodeData(dst any) error {
	if err := json.Unmarshal(ev.Data, dst); err != nil {
		return Permanent(fmt.Errorf("decode %s %s data: %w", ev.Type, ev.ID, err))
	}
	return nil
}
