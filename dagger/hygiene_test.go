//go:build typecheck

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

// The module's source (dagger.json "include") is uploaded on every call: it holds the project packages the module
// links and nothing else. A package the module starts to import without being included fails here, not in the
// engine after minutes of loading; one included but no longer imported fails too.
func TestIncludeMatchesImports(t *testing.T) {
	raw, err := os.ReadFile("../dagger.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Include []string `json:"include"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("../dagger.json: %v", err)
	}
	const prefix = "github.com/imagemode/imagemode/"
	out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", "-tags", "typecheck", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	var linked []string
	for _, p := range strings.Fields(string(out)) {
		if dir, ok := strings.CutPrefix(p, prefix); ok {
			linked = append(linked, dir+"/*.go")
		}
	}
	var included []string
	for _, pat := range cfg.Include {
		switch {
		case pat == "go.mod" || pat == "go.sum" || strings.HasPrefix(pat, "!"):
		case path.Ext(pat) == ".go":
			included = append(included, pat)
		default:
			t.Errorf("../dagger.json include %q: only go.mod, go.sum, exclusions and the Go files of linked packages belong there", pat)
		}
	}
	slices.Sort(linked)
	slices.Sort(included)
	if !slices.Equal(linked, included) {
		t.Errorf("../dagger.json include lists %v; the module links %v", included, linked)
	}
	if !slices.Contains(cfg.Include, "!ci/**/*_test.go") {
		t.Errorf("../dagger.json include: tests are not excluded (\"!ci/**/*_test.go\")")
	}
}
