package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/tidemark/tidemark"

// imports returns, for every package of the module, the import paths its
// production (non-test) Go files name, whatever their build tags.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("../..") // internal/archtest
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	pkgs := map[string][]string{}
	files := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (name == "node_modules" || name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil {
			return err
		}
		pkg := path.Join(module, filepath.ToSlash(rel))
		if rel == "." {
			pkg = module
		}
		for _, imp := range f.Imports {
			ip, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if !slices.Contains(pkgs[pkg], ip) {
				pkgs[pkg] = append(pkgs[pkg], ip)
			}
		}
		if _, ok := pkgs[pkg]; !ok {
			pkgs[pkg] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read only %d Go files under the module root: not the module's tree?", files)
	}
	return pkgs
}

// deps returns every import path pkg reaches through the module's packages
// (third-party packages are leaves here).
func deps(pkgs map[string][]string, pkg string) map[string]bool {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(p string) {
		for _, ip := range pkgs[p] {
			if !seen[ip] {
				seen[ip] = true
				walk(ip)
			}
		}
	}
	walk(pkg)
	return seen
}

func under(ip, prefix string) bool { return ip == prefix || strings.HasPrefix(ip, prefix+"/") }

// TestLayering checks the seams of docs/architecture.md.
func TestLayering(t *testing.T) {
	pkgs := imports(t)
	in := func(rel string) string { return module + "/" + rel }

	// The audit reads destinations and the log through its own small
	// interfaces: it sits below the transport, the pipeline and every
	// concrete destination, directly or not.
	if _, ok := pkgs[in("internal/audit")]; !ok {
		t.Fatal("package internal/audit not found")
	}
	d := deps(pkgs, in("internal/audit"))
	for _, banned := range []string{"internal/transport", "internal/pipeline", "internal/destination/blob", "internal/destination/registry", "internal/server", "internal/assemble"} {
		if d[in(banned)] {
			t.Errorf("internal/audit depends on %s", banned)
		}
	}

	// Concrete destinations are known only to the registry (and tests).
	concrete := func(ip string) bool {
		if !under(ip, in("internal/destination")) || ip == in("internal/destination") {
			return false
		}
		return ip != in("internal/destination/registry") && ip != in("internal/destination/destinationtest")
	}
	for pkg, ips := range pkgs {
		for _, ip := range ips {
			if concrete(ip) && pkg != in("internal/destination/registry") && !under(pkg, ip) {
				t.Errorf("%s imports the concrete destination %s (only internal/destination/registry may)", strings.TrimPrefix(pkg, module+"/"), strings.TrimPrefix(ip, module+"/"))
			}
		}
	}

	// No Pebble type leaves the state store.
	for pkg, ips := range pkgs {
		for _, ip := range ips {
			if under(ip, "github.com/cockroachdb/pebble") || under(ip, "github.com/cockroachdb/pebble/v2") {
				if !under(pkg, in("internal/eventlog")) {
					t.Errorf("%s imports %s (only internal/eventlog, the state store, may)", strings.TrimPrefix(pkg, module+"/"), ip)
				}
			}
		}
	}

	// The status page reads the server only through its HTTP API: it
	// imports no tidemark package.
	for _, ip := range pkgs[in("internal/ui")] {
		if under(ip, module) {
			t.Errorf("internal/ui imports %s (the page reads the HTTP API only)", strings.TrimPrefix(ip, module+"/"))
		}
	}

	// Test helpers stay out of production code.
	for pkg, ips := range pkgs {
		for _, ip := range ips {
			if under(ip, in("internal/testenv")) && !under(pkg, in("internal/testenv")) {
				t.Errorf("%s imports the test helper %s outside a test", strings.TrimPrefix(pkg, module+"/"), strings.TrimPrefix(ip, module+"/"))
			}
		}
	}
}
