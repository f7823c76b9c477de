package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordermesh/ordermesh/internal/app"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/sealed"
)

// TestSetupIdentitiesConfigureTheBroker: what `setup --identities` writes
// is a configuration a real nats-server loads; with it, setup (as the
// administrative user) makes the streams, and a service's identity may
// publish its own events only, and may not change the streams.
func TestSetupIdentitiesConfigureTheBroker(t *testing.T) {
	dir := t.TempDir()
	code, out, stderr := ordermesh(t, "setup", "--identities", dir)
	if code != 0 || !strings.Contains(out, app.NATSAuthFile) {
		t.Fatalf("setup --identities: exit %d\n%s%s", code, out, stderr)
	}
	for _, name := range []string{app.NATSIdentityFile("orders"), app.PaymentTokenKeyFile} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v; want mode 0600", name, err)
		}
	}
	keyText, _ := os.ReadFile(filepath.Join(dir, app.PaymentTokenKeyFile))
	pubText, _ := os.ReadFile(filepath.Join(dir, app.PaymentTokenPublicKeyFile))
	key, err := sealed.ParseKey(string(keyText))
	if err != nil {
		t.Fatal(err)
	}
	if pub, err := sealed.ParsePublicKey(string(pubText)); err != nil || pub.String() != key.Public().String() {
		t.Fatalf("payment-token.pub is not the key's public half (%v)", err)
	}
	conf := filepath.Join(dir, "nats.conf")
	os.WriteFile(conf, []byte("listen: 127.0.0.1:-1\njetstream {store_dir: \""+filepath.Join(dir, "js")+"\"}\ninclude ./"+app.NATSAuthFile+"\n"), 0o600)
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server cannot load the identities: %v", err)
	}
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	url := srv.ClientURL()
	if code, out, stderr := ordermesh(t, "setup", "--nats", url, "--nats-user", "ordermesh", "--nats-password-file", filepath.Join(dir, app.NATSIdentityFile("ordermesh"))); code != 0 {
		t.Fatalf("setup as the administrative user: exit %d\n%s%s", code, out, stderr)
	}
	pw, _ := os.ReadFile(filepath.Join(dir, app.NATSIdentityFile("shipping")))
	nc, err := nats.Connect(url, nats.UserInfo("shipping", strings.TrimSpace(string(pw))))
	if err != nil {
		t.Fatalf("shipping's identity: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	mine := bustest.NewEvent(t, event.ShipmentCreated, "o-1", map[string]any{})
	if _, err := js.PublishMsg(ctx, mine.Msg()); err != nil {
		t.Errorf("shipping may not publish shipment.created: %v", err)
	}
	if _, err := js.PublishMsg(ctx, bustest.NewEvent(t, event.PaymentCaptured, "o-1", map[string]any{}).Msg()); err == nil {
		t.Error("shipping published payment.captured")
	}
	if err := js.DeleteStream(ctx, bus.StreamEvents); err == nil {
		t.Error("shipping deleted EVENTS")
	}
	// A service on streams setup made starts without changing them.
	b, err := bus.New(nc, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := b.EnsureStreams(sctx); err != nil {
		t.Fatalf("a service's identity on streams setup made: %v", err)
	}
}
