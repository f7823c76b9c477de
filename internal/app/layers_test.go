package app

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
		if !strings.HasPrefix(p, "platform/") && p != "apperr" && p != "pspapi" {
			t.Errorf("psp imports %s: the simulator must not depend on ordermesh's domain", p)
		}
	}
	// The provider's wire format stands between the two sides.
	for p := range imports("pspapi") {
		t.Errorf("pspapi imports %s: the provider's API must not depend on ordermesh", p)
	}
	for _, dir := range []string{"payment", "psp"} {
		for p := range imports(dir) {
			if p == "psp" || strings.HasPrefix(p, "notification") {
				t.Errorf("%s imports %s", dir, p)
			}
		}
	}
}

// TestDomainsImportNothing: every context keeps its rules in a domain
// package (what an event or a command does, as pure functions of plain
// values), and a domain package depends, through everything it imports,
// on the event catalog and the standard library only: no database,
// broker, HTTP, clock or error mechanism of ordermesh's, so its whole
// table is tested as plain functions. It asks `go list -deps`, so an
// import reached through another package counts too.
func TestDomainsImportNothing(t *testing.T) {
	const mod = "github.com/ordermesh/ordermesh/internal/"
	deps := func(pkg string) ([]string, error) {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("%s", strings.TrimSpace(string(out)))
		}
		return strings.Fields(string(out)), nil
	}
	// The catalog validates events against its JSON Schemas: what it
	// needs for that comes with it.
	catalog, err := deps(mod + "event")
	if err != nil {
		t.Fatal(err)
	}
	contexts := []string{"order", "inventory", "payment", "shipping", "notification"}
	for _, ctx := range contexts {
		pkg := mod + ctx + "/domain"
		got, err := deps(pkg)
		if err != nil {
			t.Errorf("%s has no domain package (%v): its rules belong in %s/domain", ctx, err, ctx)
			continue
		}
		for _, dep := range got {
			if dep != pkg && !slices.Contains(catalog, dep) {
				t.Errorf("%s depends on %s: a domain package may import only the event catalog and the standard library", pkg, dep)
			}
		}
	}
	// Every context directory is listed above.
	entries, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join("..", e.Name(), "domain")); err == nil && !slices.Contains(contexts, e.Name()) {
			t.Errorf("%s/domain is not checked: add %s to the contexts here", e.Name(), e.Name())
		}
	}
}

// TestSizeLimits: no file over 400 lines outside tests, so each reads in
// one sitting. A function is as long as its one idea: 80 lines is not a
// target to split at but the point where it is usually two ideas, and a
// reader should be told which.
func TestSizeLimits(t *testing.T) {
	for _, root := range []string{"..", "../../cmd"} {
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if n := strings.Count(string(b), "\n"); n > 400 {
				t.Errorf("%s has %d lines; split it (at most 400 outside tests)", path, n)
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, b, 0)
			if err != nil {
				return err
			}
			for _, decl := range f.Decls {
				if fn, ok := decl.(*ast.FuncDecl); ok && fn.Body != nil {
					if n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1; n > 80 {
						t.Errorf("%s: %s has %d lines: is it one idea? (at most 80 outside tests)", path, fn.Name.Name, n)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestOnlyTheInboxReadsTheInbox: a consumer asks the inbox package what
// it has processed; no context reads or writes the table itself.
func TestOnlyTheInboxReadsTheInbox(t *testing.T) {
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") ||
			strings.HasPrefix(path, filepath.Join("..", "platform", "inbox")) {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, q := range []string{"FROM inbox", "INTO inbox", "UPDATE inbox"} {
			if strings.Contains(string(b), q) {
				t.Errorf("%s has %q: use the inbox package", path, q)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStoresOwnTheSQL: SQL is written only in store files (a name with
// "store" in it: store.go, apikey_store.go), in every package of the tree,
// so a reader finds every query of a context, or of the platform, in one
// place. It looks at string literals, not comments.
func TestStoresOwnTheSQL(t *testing.T) {
	sql := regexp.MustCompile(`(?i)^\s*(SELECT|INSERT INTO|DELETE FROM|UPDATE \w+ SET|CREATE TABLE)\b|\b(INSERT INTO|DELETE FROM)\b|\bSELECT .* FROM\b`)
	for _, root := range []string{"..", "../../cmd", "../../bench"} {
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			name := d.Name()
			if err != nil || d.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") || strings.Contains(name, "store") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING && sql.MatchString(lit.Value[1:]) {
					t.Errorf("%s has SQL (%.40s…): it belongs in a store file of its package", path, lit.Value)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
