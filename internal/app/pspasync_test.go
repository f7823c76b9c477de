package app

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/stdwebhook"
	"github.com/ordermesh/ordermesh/internal/psp"
	"github.com/ordermesh/ordermesh/internal/pspapi"
)

// TestProviderAsync runs the saga with the provider answering "pending" and
// deciding later through a signed webhook to payments.
func TestProviderAsync(t *testing.T) {
	s := startStack(t, Config{PSP: psp.Config{Async: true}})
	s.addProduct("ASYNC", 10)
	ok := s.place(orderBody("lea", psp.TokenOK, order.ItemRequest{SKU: "ASYNC", Quantity: 1}))
	declined := s.place(orderBody("max", psp.TokenDecline, order.ItemRequest{SKU: "ASYNC", Quantity: 1}))
	got := s.settle([]string{ok.ID, declined.ID}, 20*time.Second)
	if got[ok.ID].Status != order.Completed {
		t.Errorf("approved order = %s/%s", got[ok.ID].Status, got[ok.ID].CancelReason)
	}
	if o := got[declined.ID]; o.Status != order.Cancelled || o.CancelReason != event.ReasonPaymentDeclined {
		t.Errorf("declined order = %s/%s", o.Status, o.CancelReason)
	}
	s.checkInvariants(got)
}

// TestProviderWebhookVerification sends the provider's webhook by hand
// (signed with the official Standard Webhooks library) while the
// simulator's own notifications go nowhere.
func TestProviderWebhookVerification(t *testing.T) {
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	s := startStack(t, Config{PSP: psp.Config{Async: true, Secret: secret, NotifyURL: "http://127.0.0.1:1"}})
	s.addProduct("HOOKED", 10)
	o := s.place(orderBody("ned", psp.TokenOK, order.ItemRequest{SKU: "HOOKED", Quantity: 1}))

	var auth pspapi.Operation
	bustest.Eventually(t, 10*time.Second, "the provider to have authorized (answering pending)", func() bool {
		var ops []pspapi.Operation
		s.do("GET", "/api/admin/psp/ledger?order_id="+o.ID, nil, nil, &ops)
		for _, op := range ops {
			if op.Op == pspapi.OpAuthorize {
				auth = op
				return true
			}
		}
		return false
	})
	bustest.Eventually(t, 10*time.Second, "payments to record the pending authorization", func() bool {
		var state string
		s.n.stores["payments"].db.QueryRow(context.Background(), "SELECT state FROM payments WHERE order_id = ?", o.ID).Scan(&state)
		return state == "authorizing"
	})
	body, _ := json.Marshal(map[string]any{"type": "authorization.completed", "timestamp": time.Now().Format(time.RFC3339), "data": auth})
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	post := func(id string, at time.Time, sign func(string, time.Time) string) int {
		req, _ := http.NewRequest("POST", s.base+"/api/psp/webhooks", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if id != "" {
			req.Header.Set("webhook-id", id)
			req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
			req.Header.Set("webhook-signature", sign(id, at))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	official := func(id string, at time.Time) string {
		sig, err := wh.Sign(id, at, body)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	other, _ := stdwebhook.NewSecret()
	wrongKey := func(id string, at time.Time) string {
		w, _ := standardwebhooks.NewWebhook(other)
		sig, _ := w.Sign(id, at, body)
		return sig
	}
	if code := post("", time.Now(), nil); code != 400 {
		t.Errorf("unsigned webhook = %d, want 400", code)
	}
	if code := post("msg_1", time.Now(), wrongKey); code != 400 {
		t.Errorf("webhook signed with another secret = %d, want 400", code)
	}
	if code := post("msg_1", time.Now().Add(-6*time.Minute), official); code != 400 {
		t.Errorf("webhook 6 minutes old = %d, want 400", code)
	}
	if s.get(o.ID).Status != order.Pending {
		t.Fatal("the order moved before a valid webhook arrived")
	}
	if code := post("msg_1", time.Now(), official); code != http.StatusNoContent {
		t.Fatalf("valid webhook = %d, want 204", code)
	}
	got := s.settle([]string{o.ID}, 20*time.Second)
	if got[o.ID].Status != order.Completed {
		t.Fatalf("order after the provider's approval = %s", got[o.ID].Status)
	}
	// The same webhook again, and the same outcome under a new id: both
	// acknowledged, neither authorizes twice.
	if code := post("msg_1", time.Now(), official); code != http.StatusNoContent {
		t.Errorf("replayed webhook = %d, want 204", code)
	}
	if code := post("msg_2", time.Now(), official); code != http.StatusNoContent {
		t.Errorf("repeated outcome = %d, want 204", code)
	}
	authorized := 0
	for _, ev := range bustest.ReadStream(t, s.bus, bus.StreamEvents) {
		if ev.Type == event.PaymentAuthorized && ev.Subject == o.ID {
			authorized++
		}
	}
	if authorized != 1 {
		t.Fatalf("%d payment.authorized events for one order, want 1", authorized)
	}

	// An outcome for an order payments has not recorded yet (its batch has
	// not committed) is answered "retry", not dropped; one too old to be
	// anything but an unknown order is acknowledged.
	stranger := auth
	stranger.OrderID = "01a1fef0-0000-7000-8000-000000000000"
	body, _ = json.Marshal(map[string]any{"type": "authorization.completed", "timestamp": time.Now().Format(time.RFC3339), "data": stranger})
	if code := post("msg_3", time.Now(), official); code != http.StatusServiceUnavailable {
		t.Errorf("outcome for a payment not recorded yet = %d, want 503 so the provider retries", code)
	}
	stranger.At = time.Now().Add(-time.Hour)
	body, _ = json.Marshal(map[string]any{"type": "authorization.completed", "timestamp": time.Now().Format(time.RFC3339), "data": stranger})
	if code := post("msg_4", time.Now(), official); code != http.StatusNoContent {
		t.Errorf("hour-old outcome for an unknown order = %d, want 204", code)
	}
}
