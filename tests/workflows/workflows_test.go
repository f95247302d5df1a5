// Package workflows lints .github/workflows with actionlint (github.com/rhysd/actionlint): any finding fails. It is
// its own Go module so that actionlint's dependencies stay out of what the Dagger module builds.
package workflows

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// usesRE matches a step's action reference and the comment after it.
var usesRE = regexp.MustCompile(`(?m)^\s*(?:-\s+)?uses:\s*([^\s#]+)\s*(#.*)?$`)

// TestActionsArePinned: every action is used by a full commit SHA with its version in a comment (tags move; a
// moved tag of an action in the job that holds the signing key would run code nobody reviewed), and nothing is
// installed with curl | sh.
func TestActionsArePinned(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", ".github", "workflows", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkPins(string(data)); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
		n += len(usesRE.FindAllString(string(data), -1))
	}
	if n < 10 {
		t.Errorf("only %d uses: lines found: the pattern no longer matches the workflows", n)
	}
	// The check itself fails on what it must refuse.
	for _, bad := range []string{"      - uses: actions/checkout@v4\n", "      - uses: actions/checkout@11d5960a326750d5838078e36cf38b85af677262\n",
		"      - uses: actions/checkout@11d5960\n  # v4\n", "        run: curl -fsSL https://dl.dagger.io/dagger/install.sh | sh\n",
		`          curl -fsSL https://dl.dagger.io/dagger/install.sh | sudo env BIN_DIR=/usr/local/bin DAGGER_VERSION="$V" sh` + "\n"} {
		if checkPins(bad) == nil {
			t.Errorf("not refused: %q", bad)
		}
	}
	if err := checkPins("      - uses: actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # v4.4.0\n      - uses: ./local\n"); err != nil {
		t.Errorf("a pinned action refused: %v", err)
	}
}

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

func checkPins(workflow string) error {
	var bad []string
	for _, m := range usesRE.FindAllStringSubmatch(workflow, -1) {
		ref, comment := m[1], strings.TrimSpace(strings.TrimPrefix(m[2], "#"))
		if strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "docker://") && strings.Contains(ref, "@sha256:") {
			continue
		}
		_, at, ok := strings.Cut(ref, "@")
		switch {
		case !ok || !shaRE.MatchString(at):
			bad = append(bad, ref+": not a full commit SHA")
		case !strings.HasPrefix(comment, "v"):
			bad = append(bad, ref+": no version comment (# vX.Y.Z)")
		}
	}
	if regexp.MustCompile(`(curl|wget)[^\n|]*\|[^\n]*\b(ba)?sh\b`).MatchString(workflow) {
		bad = append(bad, "curl | sh")
	}
	if len(bad) > 0 {
		return fmt.Errorf("unpinned: %s", strings.Join(bad, "; "))
	}
	return nil
}
