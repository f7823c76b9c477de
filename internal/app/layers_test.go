package app

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestMechanismsBelongToTheirOwners: the payment provider simulator is an
// outside system and imports no ordermesh domain package; payments speaks
// to a provider through its own types, not the simulator's; Standard
// Webhooks signing is a platform package, not the merchant-webhook
// service's.
func TestMechanismsBelongToTheirOwners(t *testing.T) {
	const mod = "github.com/ordermesh/ordermesh/internal/"
	imports := func(dir string) map[string]bool {
		out := map[string]bool{}
		entries, err := os.ReadDir(filepath.Join("..", dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", dir, e.Name()), nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if strings.HasPrefix(p, mod) {
					out[strings.TrimPrefix(p, mod)] = true
				}
			}
		}
		return out
	}
	for p := range imports("psp") {
		if !strings.HasPrefix(p, "platform/") && p != "apperr" {
			t.Errorf("psp imports %s: the simulator must not depend on ordermesh's domain", p)
		}
	}
	for _, dir := range []string{"payment", "psp"} {
		for p := range imports(dir) {
			if p == "psp" || strings.HasPrefix(p, "notification") {
				t.Errorf("%s imports %s", dir, p)
			}
		}
	}
}
