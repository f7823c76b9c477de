package app

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/psp"
)

// TestObservabilityArtefacts: the Grafana dashboard and the Prometheus
// alert rules in deploy/ parse, and every metric they name is one that a
// node serving every service exports once it has handled an order.
func TestObservabilityArtefacts(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana/ordermesh-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	raw, err = os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
				For         string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if r.Expr == "" {
				t.Errorf("alert %s has no expression", r.Alert)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	for _, want := range []string{"OrdermeshDeadLetters", "OrdermeshConsumerLagGrowing", "OrdermeshOutboxStuck", "OrdermeshProviderBreakerOpen"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}

	s := startStack(t, Config{})
	s.addProduct("SEEN", 5)
	ok := s.place(orderBody("ada", psp.TokenOK, order.ItemRequest{SKU: "SEEN", Quantity: 1}))
	declined := s.place(orderBody("bob", psp.TokenDecline, order.ItemRequest{SKU: "SEEN", Quantity: 1}))
	s.settle([]string{ok.ID, declined.ID}, 30*time.Second)
	families, err := s.n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = true
	}
	named := map[string]bool{}
	for _, e := range exprs {
		for _, m := range regexp.MustCompile(`ordermesh_[a-z0-9_]+`).FindAllString(e, -1) {
			named[m] = true
		}
	}
	if len(named) < 10 {
		t.Fatalf("the dashboard and alerts name only %d metrics", len(named))
	}
	for m := range named {
		base := m
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !exported[m] && !exported[base] {
			t.Errorf("%s is named in deploy/ but not exported", m)
		}
	}
}
