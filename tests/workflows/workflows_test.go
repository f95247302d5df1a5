// Package workflows lints .github/workflows with actionlint (github.com/rhysd/actionlint): any finding fails. It is
// its own Go module so that actionlint's dependencies stay out of what the Dagger module builds.
package workflows

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
)

func TestActionlint(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", ".github", "workflows", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d workflows, want pr.yml, main.yml and release.yml", len(files))
	}
	var out bytes.Buffer
	opts := &actionlint.LinterOptions{}
	// Shell scripts in run: steps are checked with shellcheck when it is installed (.ci/run installs it).
	if p, err := exec.LookPath("shellcheck"); err == nil {
		opts.Shellcheck = p
	}
	l, err := actionlint.NewLinter(&out, opts)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.LintFiles(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Errorf("%s:%d:%d: %s [%s]", e.Filepath, e.Line, e.Column, e.Message, e.Kind)
	}
	if len(errs) > 0 {
		t.Logf("actionlint:\n%s", out.String())
	}
}

// TestWorkflowPolicies checks what actionlint does not: least permissions, pinned Dagger, concurrency, KVM, and the
// artifacts the workflows promise.
func TestWorkflowPolicies(t *testing.T) {
	for _, name := range []string{"pr.yml", "main.yml", "release.yml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", ".github", "workflows", name))
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		for _, want := range []string{"permissions: {}", "concurrency:", `DAGGER_VERSION: "0.19.10"`} {
			if !strings.Contains(s, want) {
				t.Errorf("%s lacks %q", name, want)
			}
		}
		if strings.Contains(s, "dagger-for-github") && !strings.Contains(s, "version: ${{ env.DAGGER_VERSION }}") {
			t.Errorf("%s calls dagger-for-github without pinning the engine version", name)
		}
		if strings.Contains(s, "write-all") || strings.Contains(s, "permissions: write") {
			t.Errorf("%s grants broad permissions", name)
		}
	}
	main, err := os.ReadFile(filepath.Join("..", "..", ".github", "workflows", "main.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"id-token: write", "--keyless", "schedule:", "--refresh all", "--disk", "lifecycle-test", "99-kvm4all.rules", "upload-artifact"} {
		if !strings.Contains(string(main), want) {
			t.Errorf("main.yml lacks %q", want)
		}
	}
}
