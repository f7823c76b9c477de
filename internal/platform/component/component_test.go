package component_test

import (
	"flag"
	"slices"
	"testing"

	"github.com/ordermesh/ordermesh/internal/platform/component"
)

// shared is a component's settings with a credential another one reads too.
type shared struct{ key string }

func (s *shared) Flags(fs *flag.FlagSet) { component.StringVar(fs, &s.key, "api-key", "the key") }
func (s *shared) Check() error           { return nil }

// TestSharedFlagSetsEveryReader: a flag two components declare is one
// flag; setting it sets both, and each lists it among its own.
func TestSharedFlagSetsEveryReader(t *testing.T) {
	var a, b shared
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	a.Flags(fs)
	b.Flags(fs)
	if err := fs.Parse([]string{"--api-key", "k1"}); err != nil {
		t.Fatal(err)
	}
	if a.key != "k1" || b.key != "k1" {
		t.Fatalf("after --api-key k1: first reader has %q, second %q", a.key, b.key)
	}
	for _, c := range []component.Component{{Name: "a", Settings: &a}, {Name: "b", Settings: &b, Shared: []string{"node-flag"}}} {
		if names := c.FlagNames(); !slices.Contains(names, "api-key") {
			t.Fatalf("%s's flags %v lack api-key", c.Name, names)
		}
	}
}
