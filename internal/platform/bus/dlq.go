package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetter is one message in the DLQ stream, with why and where it failed.
type DeadLetter struct {
	// ID is the dead letter's sequence in the DLQ stream.
	ID         uint64            `json:"id"`
	Consumer   string            `json:"consumer"`
	EventID    string            `json:"event_id"`
	Type       string            `json:"type"`
	Error      string            `json:"error"`
	Subject    string            `json:"original_subject"`
	Stream     string            `json:"original_stream"`
	StreamSeq  uint64            `json:"original_stream_seq"`
	Deliveries int               `json:"deliveries"`
	At         time.Time         `json:"dead_lettered_at"`
	Headers    map[string]string `json:"headers,omitempty"`
	Data       []byte            `json:"-"`
}

// ErrDeadLetterNotFound is returned for a dead-letter id that is not (or no
// longer) in the DLQ stream.
var ErrDeadLetterNotFound = errors.New("dead letter not found")

// DeadLetterFrom reads a dead letter from its stored headers and body:
// seq is its id, stored when the broker stored it (the dead-letter time
// header wins when present). Every engine stores dead letters alike.
func DeadLetterFrom(seq uint64, h nats.Header, data []byte, stored time.Time) DeadLetter {
	dl := DeadLetter{
		ID:       seq,
		Consumer: h.Get(HeaderDLQConsumer),
		EventID:  h.Get(HeaderID),
		Type:     h.Get(HeaderType),
		Error:    h.Get(HeaderDLQError),
		Subject:  h.Get(HeaderDLQSubject),
		Stream:   h.Get(HeaderDLQStream),
		At:       stored,
		Headers:  map[string]string{},
		Data:     data,
	}
	dl.StreamSeq, _ = strconv.ParseUint(h.Get(HeaderDLQStreamSeq), 10, 64)
	dl.Deliveries, _ = strconv.Atoi(h.Get(HeaderDLQDeliveries))
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderDLQTime)); err == nil {
		dl.At = t
	}
	for k := range h {
		dl.Headers[k] = h.Get(k)
	}
	return dl
}

// DeadLetters lists every dead letter, oldest first.
func (b *Bus) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	stream, err := b.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("open %s stream: %w", StreamDLQ, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s stream info: %w", StreamDLQ, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", StreamDLQ, err)
	}
	var out []DeadLetter
	for {
		// Ask for no more than the stream holds, so Fetch returns at once
		// instead of waiting out its deadline for a full batch.
		want := int(min(uint64(256), info.State.Msgs-min(info.State.Msgs, uint64(len(out)))))
		if want == 0 {
			return out, nil
		}
		batch, err := cons.Fetch(want, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", StreamDLQ, err)
		}
		n, last := 0, false
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", StreamDLQ, err)
			}
			out = append(out, DeadLetterFrom(md.Sequence.Stream, msg.Headers(), msg.Data(), md.Timestamp))
			last = md.NumPending == 0
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("read %s: %w", StreamDLQ, err)
		}
		if last || n == 0 {
			return out, nil
		}
	}
}

// DeadLetter returns one dead letter by id, or ErrDeadLetterNotFound.
func (b *Bus) DeadLetter(ctx context.Context, id uint64) (DeadLetter, error) {
	stream, err := b.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("open %s stream: %w", StreamDLQ, err)
	}
	raw, err := stream.GetMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, fmt.Errorf("%w: %d", ErrDeadLetterNotFound, id)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("get dead letter %d: %w", id, err)
	}
	return DeadLetterFrom(raw.Sequence, raw.Header, raw.Data, raw.Time), nil
}

// Replay sends dead letter id back to the consumer named in it (through
// the REPLAY stream, so no other consumer sees it again) and removes it from
// the DLQ. If it fails again it becomes a new dead letter.
func (b *Bus) Replay(ctx context.Context, id uint64) error {
	dl, err := b.DeadLetter(ctx, id)
	if err != nil {
		return err
	}
	if dl.Consumer == "" {
		return fmt.Errorf("dead letter %d names no consumer (header %s); cannot replay it", id, HeaderDLQConsumer)
	}
	h := nats.Header{}
	for k, v := range dl.Headers {
		if k == HeaderDLQError || k == HeaderDLQTime || k == HeaderDLQDeliveries {
			continue
		}
		h.Set(k, v)
	}
	h.Set(jetstream.MsgIDHeader, "replay."+strconv.FormatUint(id, 10))
	msg := &nats.Msg{
		Subject: replayPrefix + dl.Consumer + "." + subjectToken(dl.Type),
		Header:  h,
		Data:    dl.Data,
	}
	if _, err := b.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("replay dead letter %d to %s: %w", id, dl.Consumer, err)
	}
	stream, err := b.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return fmt.Errorf("open %s stream: %w", StreamDLQ, err)
	}
	if err := stream.DeleteMsg(ctx, id); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("remove replayed dead letter %d: %w", id, err)
	}
	return nil
}

// PurgeDeadLetters deletes every dead letter and reports how many there were.
func (b *Bus) PurgeDeadLetters(ctx context.Context) (uint64, error) {
	stream, err := b.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return 0, fmt.Errorf("open %s stream: %w", StreamDLQ, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("%s stream info: %w", StreamDLQ, err)
	}
	if err := stream.Purge(ctx); err != nil {
		return 0, fmt.Errorf("purge %s: %w", StreamDLQ, err)
	}
	return info.State.Msgs, nil
}

// deadLetter publishes msg to dlq.<consumer>.<type> with why it failed and
// where it came from, then terminates it so the consumer moves on. If the
// dead-letter stream cannot be written, the message is redelivered later
// rather than lost.
func (c *Consumer) deadLetter(msg jetstream.Msg, md *jetstream.MsgMetadata, cause error) {
	defer c.held.remove(msg)
	dl := c.deadLetterMsg(msg.Headers(), msg.Data(), msg.Subject(), md.Stream, md.Sequence.Stream, md.NumDelivered, cause)
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if _, err := c.bus.js.PublishMsg(ctx, dl); err != nil {
		c.log.Error("dead-letter publish failed; will redeliver", append(headerLogAttrs(msg.Headers()), "subject", msg.Subject(), "seq", md.Sequence.Stream, "err", err)...)
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	c.log.Warn("dead-lettered", append(headerLogAttrs(msg.Headers()), "subject", msg.Subject(), "seq", md.Sequence.Stream, "deliveries", md.NumDelivered, "err", cause)...)
	c.count(subjectToken(msg.Headers().Get(HeaderType)), "dead_letter")
	if err := msg.TermWithReason("dead-lettered"); err != nil {
		c.log.Warn("term", "seq", md.Sequence.Stream, "err", err)
	}
}

// deadLetterMsg is the DLQ message for c of the message (headers hdr,
// data) on subject, stored at seq in stream, that failed with cause after
// deliveries.
func (c *Consumer) deadLetterMsg(hdr nats.Header, data []byte, subject, stream string, seq, deliveries uint64, cause error) *nats.Msg {
	h := DeadLetterHeaders(hdr, c.cfg.Name, subject, stream, seq, deliveries, cause)
	h.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s.%s.%d", c.cfg.Name, stream, seq))
	return &nats.Msg{Subject: dlqPrefix + c.cfg.Name + "." + subjectToken(hdr.Get(HeaderType)), Header: h, Data: data}
}

// DeadLetterHeaders are the headers of the dead letter of consumer for a
// message (headers hdr) received on subject, stored at seq in stream (a
// queue, on RabbitMQ), that failed with cause after deliveries: the
// original ones but the broker's own, and why and where it failed.
func DeadLetterHeaders(hdr nats.Header, consumer, subject, stream string, seq, deliveries uint64, cause error) nats.Header {
	h := nats.Header{}
	for k, v := range hdr {
		if strings.HasPrefix(k, "Nats-") || strings.HasPrefix(k, "x-") {
			continue
		}
		h[k] = v
	}
	h.Set(HeaderDLQError, headerValue(cause.Error()))
	h.Set(HeaderDLQSubject, subject)
	h.Set(HeaderDLQStream, stream)
	h.Set(HeaderDLQStreamSeq, strconv.FormatUint(seq, 10))
	h.Set(HeaderDLQDeliveries, strconv.FormatUint(deliveries, 10))
	h.Set(HeaderDLQConsumer, consumer)
	h.Set(HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	return h
}

// headerValue makes s safe as a NATS header value: one line, at most 4 KiB.
func headerValue(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	if len(s) > 4096 {
		s = s[:4096]
	}
	return s
}

// subjectToken makes an event type usable inside a subject: tokens of
// letters, digits, '-' and '_' separated by dots; "unknown" when empty.
func subjectToken(typ string) string {
	parts := strings.Split(typ, ".")
	out := parts[:0]
	for _, p := range parts {
		p = strings.Map(func(r rune) rune {
			if r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
				return r
			}
			return '_'
		}, p)
		if p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return "unknown"
	}
	return strings.Join(out, ".")
}

// Dead-letter headers, beside the original CloudEvents headers.
const (
	HeaderDLQError      = "Ordermesh-Dlq-Error"
	HeaderDLQSubject    = "Ordermesh-Dlq-Subject"
	HeaderDLQStream     = "Ordermesh-Dlq-Stream"
	HeaderDLQStreamSeq  = "Ordermesh-Dlq-Stream-Seq"
	HeaderDLQDeliveries = "Ordermesh-Dlq-Deliveries"
	HeaderDLQConsumer   = "Ordermesh-Dlq-Consumer"
	HeaderDLQTime       = "Ordermesh-Dlq-Time"

	dlqPrefix    = "dlq."
	replayPrefix = "replay."
)
