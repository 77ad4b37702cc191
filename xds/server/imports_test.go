package server

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServerTranslatesNothing: xds/server renders what the cache serves and translates nothing itself. Of
// xds/translate, its production code may name constants only (type URLs, metadata keys): no function, no type
// whose methods would build a resource.
func TestServerTranslatesNothing(t *testing.T) {
	consts := map[string]bool{}
	for _, f := range parseDir(t, "../translate") {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, spec := range g.Specs {
					for _, n := range spec.(*ast.ValueSpec).Names {
						consts[n.Name] = true
					}
				}
			}
		}
	}
	if len(consts) == 0 {
		t.Fatal("found no constants in xds/translate")
	}
	uses := 0
	for name, f := range parseDir(t, ".") {
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "translate" {
				uses++
				if !consts[sel.Sel.Name] {
					t.Errorf("%s uses translate.%s, which is not a constant", name, sel.Sel.Name)
				}
			}
			return true
		})
	}
	if uses == 0 {
		t.Log("xds/server no longer names xds/translate at all")
	}
}

// parseDir parses the production Go files of a directory, by name.
func parseDir(t *testing.T, dir string) map[string]*ast.File {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*ast.File{}
	fset := token.NewFileSet()
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			out[n] = f
		}
	}
	return out
}
