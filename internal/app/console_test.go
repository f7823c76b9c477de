package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/psp"
)

// chromium finds a headless browser for the console tests, or skips.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium: install it (Debian: apt-get install -y chromium) to run the console's browser tests")
	return ""
}

// browser is one headless Chromium tab on the console, failing the test on
// any error the page logs or throws.
type browser struct {
	t    *testing.T
	ctx  context.Context
	shot string // directory for screenshots
	mu   sync.Mutex
	errs []string
}

func newBrowser(t *testing.T, width, height int64) *browser {
	exe := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.WindowSize(int(width), int(height)), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx, shot: t.TempDir()}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException {
				continue
			}
			// The browser logs refused API calls; the sign-in test makes some on purpose.
			if strings.Contains(m.Text, "status of 401") || strings.Contains(m.Text, "status of 403") {
				continue
			}
			b.mu.Lock()
			b.errs = append(b.errs, string(m.Type)+": "+m.Text)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.errs {
			t.Errorf("browser console: %s", e)
		}
	})
	return b
}

// do runs steps with a deadline.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// text waits until the element sel shows want, and returns its text.
func (b *browser) text(sel, want string) string {
	b.t.Helper()
	var got string
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		got, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
		cancel()
		if err == nil && strings.Contains(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			where, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.hash`))
			b.t.Fatalf("%s does not show %q on %s: %q (%v)", sel, want, where, got, err)
		}
		time.Sleep(100 * time.Millisecond) // polling the page for the condition
	}
}

// press clicks the button sel once it is shown and enabled, with the
// element's own click(): a mouse click at its coordinates lands on whatever
// is there when a live update has just moved the page.
func (b *browser) press(sel string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e || e.hidden || e.disabled) return false; e.click(); return true; })()`, sel)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		done, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && done {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s is not shown and enabled (%v)", sel, err)
		}
		time.Sleep(100 * time.Millisecond) // polling the page for the condition
	}
}

// choose picks value in the select sel, as a person would (a change event).
func (b *browser) choose(sel, value string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %q; e.dispatchEvent(new Event('change')); return true; })()`, sel, value)
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](js)); err != nil {
		b.t.Fatalf("choose %s in %s: %v", value, sel, err)
	}
}

// peek is the text of sel now, or "".
func (b *browser) peek(sel string) string {
	ctx, cancel := context.WithTimeout(b.ctx, time.Second)
	defer cancel()
	got, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	return got
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 makes a PNG
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.shot, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
	if dir := os.Getenv("ORDERMESH_CONSOLE_SHOTS"); dir != "" { // to refresh README's picture
		os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
	}
}

func (b *browser) signIn(base, token string) {
	b.t.Helper()
	b.do("sign in", chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.CSS("#signin-form button")))
}

// TestConsole drives the console in headless Chromium: a live order to
// completed, a declined order's compensation, a dead letter replayed, a
// failed webhook delivery retried, the health page, and a customer who
// gets no data.
func TestConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("a browser")
	}
	chromium(t)
	s := webhookStack(t)
	admin := customerToken(t, "ops", "admin")
	b := newBrowser(t, 1280, 800)

	t.Run("a customer gets no data", func(t *testing.T) {
		b.signIn(s.base, customerToken(t, "ada", "orders:read orders:write"))
		b.text("#signin-error", "admin token")
		shown, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`getComputedStyle(document.getElementById('nav')).display !== 'none'`))
		if err != nil || shown {
			t.Errorf("the navigation and Sign out show while signed out (%v)", err)
		}
	})

	b.signIn(s.base, admin)
	b.text("#orders", "")
	s.addProduct("CONSOLE", 10)

	t.Run("the server finds and pages what the tab has not loaded", func(t *testing.T) {
		s.addProduct("PAGED", 400)
		first := s.place(orderBody("zed", psp.TokenOK, order.ItemRequest{SKU: "PAGED", Quantity: 1}))
		for i := range 204 {
			s.place(orderBody(fmt.Sprintf("many%d", i%5), psp.TokenOK, order.ItemRequest{SKU: "PAGED", Quantity: 1}))
		}
		row := fmt.Sprintf(`#orders tr[data-order=%q]`, first.ID)
		open := func() {
			b.do("health", chromedp.Navigate(s.base+"/console/#/health"))
			b.text("#view h2", "Health")
			b.do("orders", chromedp.Navigate(s.base+"/console/#/orders"), chromedp.WaitReady(chromedp.CSS(`#view[data-live="true"]`)))
			b.text("#orders tbody", "many")
		}
		open()
		if b.peek(row) != "" {
			t.Fatalf("the oldest of 205 orders is on the first page")
		}
		b.do("filter on its customer", chromedp.SendKeys(chromedp.ID("f-customer"), "zed"))
		b.text(row, "zed")
		open()
		for range 2 { // 100 a page: the 201st order and older are on the third
			b.press("#older")
		}
		b.text(row, "zed")
	})

	t.Run("a live order to completed", func(t *testing.T) {
		// The live list starts from now: wait until the page says its new
		// stream is open. The list is already showing, so leave it first:
		// the attribute must come from a stream opened after this point.
		b.do("health", chromedp.Navigate(s.base+"/console/#/health"))
		b.text("#view h2", "Health")
		b.do("orders", chromedp.Navigate(s.base+"/console/#/orders"), chromedp.WaitReady(chromedp.CSS(`#view[data-live="true"]`)))
		o := s.place(orderBody("grace", psp.TokenOK, order.ItemRequest{SKU: "CONSOLE", Quantity: 1}))
		b.text(fmt.Sprintf(`#orders tr[data-order=%q]`, o.ID), "grace")
		s.settle([]string{o.ID}, 20*time.Second)
		b.text(fmt.Sprintf(`#orders tr[data-order=%q]`, o.ID), "completed")
		b.screenshot("orders")
		b.do("open the order", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#orders tr[data-order=%q]`, o.ID))))
		b.text("#order-status", "completed")
		b.text("#order-address", "SW1Y 4JH London, GB")
		b.text("#order-shipment", "ordermesh-post")
		if b.peek("#order-cancel") != "" {
			t.Error("a completed order offers to cancel")
		}
		saga := b.text("#view", "order.completed")
		for _, step := range []string{event.OrderPlaced, event.StockReserved, event.PaymentAuthorized, event.OrderConfirmed,
			event.ShipmentCreated, event.StockCommitted, event.PaymentCaptured, event.OrderCompleted} {
			if !strings.Contains(saga, step) {
				t.Errorf("the order page does not show %s", step)
			}
		}
		for _, want := range []string{"inventory", "payments", "shipping", "authorize", "capture"} {
			if !strings.Contains(saga, want) {
				t.Errorf("the order page does not show %q", want)
			}
		}
		b.screenshot("order")
	})

	t.Run("a declined order's compensation", func(t *testing.T) {
		o := s.place(orderBody("hopper", psp.TokenDecline, order.ItemRequest{SKU: "CONSOLE", Quantity: 1}))
		s.settle([]string{o.ID}, 20*time.Second)
		b.do("open", chromedp.Navigate(s.base+"/console/#/orders/"+o.ID))
		b.text("#order-status", "payment_declined")
		b.text(`tr.compensation[data-type="order.cancelled"]`, "compensation")
		b.text(`tr.compensation[data-type="stock.released"]`, "compensation")
		b.screenshot("declined")
	})

	t.Run("a dead letter replayed", func(t *testing.T) {
		var broken atomic.Bool
		broken.Store(true)
		var handled atomic.Int32
		c, err := s.bus.Consume(context.Background(), bus.ConsumerConfig{Name: "console-test", Types: []string{event.ProductUpdated}},
			func(_ context.Context, ev bus.Event) error {
				if ev.Subject != "POISON" {
					return nil
				}
				if broken.Load() {
					return bus.Permanent(errors.New("cannot price POISON in XTS"))
				}
				handled.Add(1)
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		s.productEvent("POISON")
		b.do("dead letters", chromedp.Navigate(s.base+"/console/#/dlq"))
		b.text("#view table", "cannot price POISON")
		b.screenshot("dead-letters")
		b.do("open", chromedp.Click(chromedp.CSS(`#view tbody tr.clickable`)))
		b.text("#dl-error", "cannot price POISON in XTS")
		b.text("#dl-payload", `"sku": "POISON"`)
		b.do("health", chromedp.Navigate(s.base+"/console/#/health"))
		b.text(".card.alert #h-dlq a", "1") // marked, and a link to the dead letters
		b.do("back", chromedp.Navigate(s.base+"/console/#/dlq"))
		b.do("open again", chromedp.Click(chromedp.CSS(`#view tbody tr.clickable`)))
		b.text("#dl-error", "cannot price POISON in XTS")
		broken.Store(false)
		b.do("replay", chromedp.Click(chromedp.ID("replay")))
		b.text("#view h2", "(0)")
		bustest.Eventually(t, 10*time.Second, "the replayed event handled", func() bool { return handled.Load() >= 1 })
		if n := handled.Load(); n != 1 {
			t.Fatalf("the replayed event was handled %d times, want 1", n)
		}
	})

	t.Run("a failed webhook delivery retried", func(t *testing.T) {
		var fail atomic.Bool
		fail.Store(true)
		r := newReceiver(t, func(string, int) int {
			if fail.Load() {
				return http.StatusInternalServerError
			}
			return http.StatusOK
		})
		s.subscribe(r, event.ProductUpdated)
		id := s.productEvent("HOOKED")
		sel := fmt.Sprintf(`tr[data-event=%q]`, id)
		// reloadUntil reloads the webhooks page until the delivery's row holds want.
		reloadUntil := func(what string, ok func(row string) bool) string {
			deadline := time.Now().Add(20 * time.Second)
			for {
				b.do("reload", chromedp.Navigate(s.base+"/console/#/webhooks"), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#view table")))
				if row := b.peek(sel); ok(row) {
					return row
				} else if time.Now().After(deadline) {
					t.Fatalf("the delivery of %s: %s: %q", id, what, row)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		row := reloadUntil("a failed attempt", func(row string) bool { return strings.Contains(row, "→ 500") })
		if !strings.Contains(row, r.srv.URL) || !strings.Contains(row, "failed") {
			t.Errorf("the delivery's row does not name its endpoint's URL and why it is not delivered: %q", row)
		}
		b.choose("#wh-f-status", "delivered")
		b.text("#deliveries tbody", "No deliveries match.")
		b.choose("#wh-f-status", "")
		b.text(sel, "→ 500")
		b.screenshot("webhooks")
		fail.Store(false)
		b.do("retry", chromedp.Click(chromedp.CSS(sel+" button")))
		reloadUntil("delivered after the retry", func(row string) bool { return strings.Contains(row, "delivered") && strings.Contains(row, "→ 200") })
		if r.count(id) == 0 {
			t.Fatal("the receiver never got the retried delivery")
		}
	})

	t.Run("health", func(t *testing.T) {
		b.do("health", chromedp.Navigate(s.base+"/console/#/health"))
		b.text("#view", "orders-saga")
		b.text("#h-dlq", "0")
		b.screenshot("health")
	})

	t.Run("phone width", func(t *testing.T) {
		phone := newBrowser(t, 390, 844)
		phone.signIn(s.base, admin)
		phone.text("#orders", "completed")
		overflow, err := chromedp.Run(phone.ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth - document.documentElement.clientWidth`))
		if err != nil {
			t.Fatal(err)
		}
		if overflow > 0 {
			t.Errorf("the orders page is %d px wider than a phone's screen", overflow)
		}
		phone.screenshot("orders-phone")
	})
}

// TestConsoleAPIIsAdminOnlyAndChecksItsInput: the console's admin API
// answers customers and anonymous callers with no data, refuses malformed
// input with a problem naming the field, and purges only when told to.
// TestConsoleCancelsAnOrder: an order still waiting on its payment
// provider is cancelled from its page, in two clicks (the first says what
// cancelling does), and the page shows it cancelled for the customer's
// request.
func TestConsoleCancelsAnOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("a browser")
	}
	chromium(t)
	// The provider answers after the payments service's own timeout: the
	// order waits, authorizing again and again, until its 30 s deadline.
	s := startStack(t, Config{PSP: psp.Config{Faults: psp.Faults{Latency: 10 * time.Second}}})
	b := newBrowser(t, 1280, 800)
	b.signIn(s.base, customerToken(t, "ops", "admin"))
	s.addProduct("CANCEL", 1)
	o := s.place(orderBody("ivy", psp.TokenOK, order.ItemRequest{SKU: "CANCEL", Quantity: 1}))
	b.do("open", chromedp.Navigate(s.base+"/console/#/orders/"+o.ID))
	b.text("#order-status", "pending")
	b.press("#order-cancel")
	b.text("#order-cancel", "Confirm")
	if got := s.get(o.ID).Status; got != order.Pending {
		t.Fatalf("one click cancelled the order: %s", got)
	}
	b.press("#order-cancel")
	b.text("#order-status", "customer_request")
	b.text("#order-status", "cancelled")
}

func TestConsoleAPIIsAdminOnlyAndChecksItsInput(t *testing.T) {
	s := startStack(t, Config{})
	admin := customerToken(t, "ops", "admin")
	ada := customerToken(t, "ada", "orders:read orders:write")
	for _, path := range []string{"/api/admin/dlq", "/api/admin/dlq/1", "/api/admin/health", "/api/admin/orders/x/saga"} {
		if resp := s.as(ada, "GET", path, nil, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("customer GET %s = %d, want 403", path, resp.StatusCode)
		}
		if resp := s.as("", "GET", path, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous GET %s = %d, want 401", path, resp.StatusCode)
		}
	}
	if resp := s.as(ada, "POST", "/api/admin/dlq/replay", nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("customer replay = %d, want 403", resp.StatusCode)
	}
	var problem struct{ Detail, Field string }
	for path, field := range map[string]string{
		"/api/admin/dlq/abc":                       "id",
		"/api/admin/dlq/0":                         "id",
		"/api/admin/orders/x/saga?since=yesterday": "since",
	} {
		problem.Detail, problem.Field = "", ""
		resp := s.as(admin, "GET", path, nil, &problem)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(problem.Detail+problem.Field, field) {
			t.Errorf("GET %s = %d %+v, want 400 naming %s", path, resp.StatusCode, problem, field)
		}
	}
	if resp := s.as(admin, "GET", "/api/admin/dlq/999", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET an absent dead letter = %d, want 404", resp.StatusCode)
	}
	if resp := s.as(admin, "DELETE", "/api/admin/dlq", nil, &problem); resp.StatusCode != http.StatusBadRequest || !strings.Contains(problem.Detail, "confirm=purge") {
		t.Errorf("purge without confirmation = %d %+v, want 400 asking for confirm=purge", resp.StatusCode, problem)
	}
	var purged struct{ Purged int }
	if resp := s.as(admin, "DELETE", "/api/admin/dlq?confirm=purge", nil, &purged); resp.StatusCode != http.StatusOK {
		t.Errorf("purge = %d, want 200", resp.StatusCode)
	}
	// The console's files are public and hold no data; they forbid framing.
	resp, err := http.Get(s.base + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("GET /console/ = %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
}
