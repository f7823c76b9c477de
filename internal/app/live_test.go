package app

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/psp"
)

type sseEvent struct {
	id, typ, data string
	order         order.Order
	retry         string // the stream's retry: field, if one came before
}

// readSSE reads events from an order's stream until it ends.
func readSSE(t *testing.T, base, id string, lastEventID string) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/orders/"+id+"/events", nil)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "retry: "):
			cur.retry = strings.TrimPrefix(line, "retry: ")
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.order); err != nil {
				t.Fatalf("event data: %v", err)
			}
		case line == "" && cur.id != "":
			out = append(out, cur)
			cur = sseEvent{retry: cur.retry}
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the stream did not end after a terminal state")
	}
	return out
}

func TestLiveOrderStatus(t *testing.T) {
	// A slow provider leaves time to watch the order move.
	s := startStack(t, Config{PSP: psp.Config{Faults: psp.Faults{Latency: 300 * time.Millisecond}}})
	s.addProduct("LIVE", 10)
	o := s.place(orderBody("iris", psp.TokenOK, order.ItemRequest{SKU: "LIVE", Quantity: 1}))

	t.Run("SSEFromTheStart", func(t *testing.T) {
		evs := readSSE(t, s.base, o.ID, "")
		var types []string
		prev := 0
		for _, e := range evs {
			v, _ := strconv.Atoi(e.id)
			if v != prev+1 || e.order.Version != v {
				t.Fatalf("event ids not each the next version of the order: %+v", evs)
			}
			if e.retry == "" {
				t.Fatalf("no retry: field before event %s", e.id)
			}
			prev = v
			types = append(types, e.typ)
		}
		if strings.Join(types, ",") != "order.placed,order.confirmed,shipment.created,payment.captured,order.completed" ||
			evs[len(evs)-1].order.Status != order.Completed {
			t.Fatalf("stream = %v (last status %s)", types, evs[len(evs)-1].order.Status)
		}
	})
	t.Run("SSEResumes", func(t *testing.T) {
		evs := readSSE(t, s.base, o.ID, "2")
		if len(evs) != 3 || evs[0].typ != "shipment.created" || evs[2].typ != "order.completed" {
			t.Fatalf("resumed after 2: %+v", evs)
		}
	})
	t.Run("LongPollAnswersOnChange", func(t *testing.T) {
		o2 := s.place(orderBody("iris", psp.TokenOK, order.ItemRequest{SKU: "LIVE", Quantity: 1}))
		var got order.Order
		resp := s.do("GET", "/api/orders/"+o2.ID+"?wait=20s&after_version=1", nil, nil, &got)
		if resp.StatusCode != 200 || got.Version < 2 {
			t.Fatalf("long poll = %d version %d, want 200 and a later version", resp.StatusCode, got.Version)
		}
		s.settle([]string{o2.ID}, 20*time.Second)
	})
	t.Run("LongPollTimesOutWith304", func(t *testing.T) {
		final := s.get(o.ID)
		resp := s.do("GET", "/api/orders/"+o.ID+"?wait=200ms&after_version="+strconv.Itoa(final.Version), nil, nil, nil)
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("long poll with nothing new = %d, want 304", resp.StatusCode)
		}
	})
	t.Run("BadParameters", func(t *testing.T) {
		for _, q := range []string{"?wait=forever&after_version=1", "?wait=5m&after_version=1", "?wait=5s", "?wait=5s&after_version=-1"} {
			if resp := s.do("GET", "/api/orders/"+o.ID+q, nil, nil, nil); resp.StatusCode != 400 {
				t.Errorf("%s = %d, want 400", q, resp.StatusCode)
			}
		}
		if resp := s.do("GET", "/api/orders/nope/events", nil, nil, nil); resp.StatusCode != 404 {
			t.Errorf("events of an unknown order = %d, want 404", resp.StatusCode)
		}
	})
}

// TestLongPollOnAnotherInstance places an order on one node and long-polls
// it on a second orders instance that shares the database and broker but
// not the process: only the broker can wake it.
func TestLongPollOnAnotherInstance(t *testing.T) {
	dir := t.TempDir()
	s := startStack(t, Config{DataDir: dir, NATSListen: "127.0.0.1:0", PSP: psp.Config{Faults: psp.Faults{Latency: 300 * time.Millisecond}}})
	s.addProduct("TWIN", 10)
	second, err := Start(context.Background(), withTestAuth(t, Config{
		Services: []string{"orders", "gateway"}, Addr: "127.0.0.1:0", NATSURL: s.n.NATSURL(), Logger: bustest.Logger(t), Orders: s.n.cfg.Orders,
		DSNs: map[string]string{"orders": "sqlite:" + filepath.Join(dir, "orders.db")},
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close(context.Background())
	o := s.place(orderBody("jo", psp.TokenOK, order.ItemRequest{SKU: "TWIN", Quantity: 1}))
	other := &stack{t: t, base: second.URL()}
	var got order.Order
	start := time.Now()
	if resp := other.do("GET", "/api/orders/"+o.ID+"?wait=20s&after_version=1", nil, nil, &got); resp.StatusCode != 200 || got.Version < 2 {
		t.Fatalf("long poll on the other instance = %d %+v", resp.StatusCode, got)
	}
	t.Logf("the other instance answered after %s", time.Since(start))
	evs := readSSE(t, second.URL(), o.ID, "")
	if last := evs[len(evs)-1]; last.typ != "order.completed" && last.typ != "order.cancelled" {
		t.Fatalf("stream on the other instance ended at %s", last.typ)
	}
}

// TestFirehose reads the admin event stream from the start, then resumes
// it with Last-Event-ID and gets only what came after.
func TestFirehose(t *testing.T) {
	s := startStack(t, Config{})
	s.addProduct("FIRE", 5)
	o := s.place(orderBody("kim", psp.TokenOK, order.ItemRequest{SKU: "FIRE", Quantity: 1}))
	s.settle([]string{o.ID}, 20*time.Second)

	// open returns the stream once its headers have come; read takes n
	// events from it.
	open := func(query, lastID string) *http.Response {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", s.base+"/api/admin/stream"+query, nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != 200 {
			t.Fatalf("GET /api/admin/stream%s = %d", query, resp.StatusCode)
		}
		return resp
	}
	read := func(resp *http.Response, n int) []sseEvent {
		t.Helper()
		var out []sseEvent
		var cur sseEvent
		sc := bufio.NewScanner(resp.Body)
		for len(out) < n && sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				cur.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				cur.typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				cur.data += strings.TrimPrefix(line, "data: ")
			case line == "" && cur.id != "":
				out = append(out, cur)
				cur = sseEvent{}
			}
		}
		if len(out) < n {
			t.Fatalf("firehose gave %d events, want %d", len(out), n)
		}
		return out
	}
	total := len(bustest.ReadStream(t, s.bus, bus.StreamEvents))
	all := read(open("", ""), total)
	for i, e := range all {
		if e.id != strconv.Itoa(i+1) {
			t.Fatalf("event %d has id %s, want the stream sequence %d", i, e.id, i+1)
		}
	}
	if all[0].typ != "product.updated" {
		t.Fatalf("first event = %s", all[0].typ)
	}
	rest := read(open("", all[total-3].id), 2)
	if rest[0].id != all[total-2].id || rest[1].id != all[total-1].id {
		t.Fatalf("resumed stream = %+v, want the last two events", rest)
	}

	// ?type= keeps only those types; ?from=now skips the history, so the
	// first event is the completion of an order placed after connecting.
	if got := read(open("?type=order.completed", ""), 1); got[0].typ != "order.completed" {
		t.Fatalf("?type=order.completed gave %+v", got)
	}
	live := open("?from=now&type=order.completed&type=order.cancelled", "")
	o2 := s.place(orderBody("kim", psp.TokenOK, order.ItemRequest{SKU: "FIRE", Quantity: 1}))
	got := read(live, 1)
	if got[0].typ != "order.completed" || got[0].id == all[total-1].id || !strings.Contains(got[0].data, o2.ID) {
		t.Fatalf("?from=now gave %+v, want the completion of %s", got, o2.ID)
	}
	for name, query := range map[string]string{"type": "?type=order.exploded", "from": "?from=yesterday"} {
		var p struct{ Field string }
		if resp := s.do("GET", "/api/admin/stream"+query, nil, nil, &p); resp.StatusCode != 400 || p.Field != name {
			t.Fatalf("GET /api/admin/stream%s = %d naming %q, want 400 naming %s", query, resp.StatusCode, p.Field, name)
		}
	}
}
