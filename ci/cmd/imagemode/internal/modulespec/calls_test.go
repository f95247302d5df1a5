package modulespec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const root = "../../../../.."

// Every `dagger call` line of README.md, docs/ and the workflows names functions, arguments and chains the module
// declares: a newcomer's first command must not fail as written.
func TestDocumentedCallsMatchTheModule(t *testing.T) {
	m, err := ReadModule(filepath.Join(root, "dagger"))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	flows, err := filepath.Glob(filepath.Join(root, ".github", "workflows", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]int{}
	for _, f := range append(append([]string{filepath.Join(root, "README.md")}, docs...), flows...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		calls := Calls(b)
		if filepath.Ext(f) == ".yml" {
			calls = append(calls, ActionCalls(b)...)
		}
		for _, c := range calls {
			checked[rel]++
			if err := m.Check(c.Text); err != nil {
				t.Errorf("%s:%d: %s\n\t%s", rel, c.Line, err, c.Text)
			}
		}
	}
	if checked[".github/workflows/main.yml"] < 2 || checked[".github/workflows/pr.yml"] < 1 {
		t.Errorf("the workflows' dagger calls were not found: %v", checked)
	}
	if checked["README.md"] < 5 {
		t.Errorf("only %d dagger call lines found in README.md", checked["README.md"])
	}
	t.Logf("checked: %v", checked)
}

func TestCheck(t *testing.T) {
	m, err := ReadModule(filepath.Join(root, "dagger"))
	if err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string]string{
		"dagger call --registry R build-all table":                                      "",
		"dagger call --os-profile rhel-10 plan":                                         "",
		"dagger call --profile rhel-10 plan":                                            "the constructor has no argument --profile",
		"dagger call plan --os-profile rhel-10":                                         "plan has no argument --os-profile",
		"dagger call --registry R build-all layer --name homepage digest":               "",
		"dagger call --registry R build-all layer digest":                               "layer: required --name not given",
		"dagger call --registry R build-all smoke-test --disk sign --key k table":       "",
		"dagger call --registry R build-all nope":                                       `Run has no function or field "nope"`,
		"dagger call --registry R build-all table digest":                               `table returns a value, yet "digest" follows`,
		"dagger call --registry R build-all":                                            "",
		"dagger call --registry R run --report \"$(cat r.json)\" verify":                "",
		"dagger call disk-image --image I --follow F --ssh-key K export --path d.qcow2": "",
		"dagger call --registry R candidate --commit C … promote --tag v1":              "",
		"dagger call --registry":                                                        "the constructor --registry: no value",
	} {
		err := m.Check(line)
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", line, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", line, err, want)
		}
	}
}

func TestCalls(t *testing.T) {
	doc := "x\n    dagger call --registry R \\\n      build-all table   # build\n| a | `dagger call lint` and `dagger call plan` |\n$ dagger call lint\n"
	got := Calls([]byte(doc))
	want := []CallLine{{2, "dagger call --registry R build-all table"}, {4, "dagger call lint"}, {4, "dagger call plan"}, {5, "dagger call lint"}}
	if len(got) != len(want) {
		t.Fatalf("Calls = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Calls[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestActionCalls(t *testing.T) {
	yml := "      - uses: dagger/dagger-for-github@v8\n        with:\n          verb: call\n          args: >-\n" +
		"            --registry r/${{ github.run_id }} ${{ env.X }}\n            build-all table\n      - name: next\n"
	got := ActionCalls([]byte(yml))
	if len(got) != 1 || got[0].Text != "dagger call --registry r/X "+Expr+" build-all table" || got[0].Line != 4 {
		t.Fatalf("ActionCalls = %+v", got)
	}
}

// daggerGlobalFlags are the flags of the dagger CLI itself (v0.19.10 and v1.0.0-beta.10, hidden ones too): a module
// argument of the same name is shadowed by them (Dagger 1.0's hidden boolean --profile made --profile unusable).
var daggerGlobalFlags = []string{"auto-apply", "cloud", "debug", "dot-focus-field", "dot-output", "dot-show-internal", "env",
	"help", "interactive", "interactive-command", "mod", "no-exit", "no-mod", "output", "profile", "progress", "quiet",
	"scale-out", "silent", "verbose", "web", "workdir", "workspace", "x-release", "json", "allow-llm", "eager-runtime", "org"}

func TestNoArgumentIsADaggerFlag(t *testing.T) {
	m, err := ReadModule(filepath.Join(root, "dagger"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(where string, fn *Func) {
		for name := range fn.Params {
			for _, g := range daggerGlobalFlags {
				if name == g {
					t.Errorf("%s takes --%s, a flag of the dagger CLI itself: rename it", where, name)
				}
			}
		}
	}
	check("the constructor", m.Constructor)
	for tn, ty := range m.Types {
		for fname, fn := range ty.Funcs {
			check(tn+"."+fname, fn)
		}
	}
}
