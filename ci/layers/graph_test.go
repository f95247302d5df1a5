package layers

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

func loadDir(t *testing.T, dir string) (*Graph, error) {
	t.Helper()
	return LoadNamed(os.DirFS(dir), GraphFile, filepath.Join(dir, GraphFile))
}

func TestProductGraphLevels(t *testing.T) {
	g, err := loadDir(t, "../../containerfiles")
	if err != nil {
		t.Fatalf("loading the product graph: %v", err)
	}
	want := [][]string{{"soe"}, {"database", "httpd"}, {"homepage"}}
	if got := g.Levels(); !reflect.DeepEqual(got, want) {
		t.Fatalf("levels = %v, want %v", got, want)
	}
	parents := map[string]string{"soe": "", "httpd": "soe", "homepage": "httpd", "database": "soe"}
	for name, parent := range parents {
		l, ok := g.Layer(name)
		if !ok {
			t.Fatalf("layer %q missing", name)
		}
		if l.Parent != parent {
			t.Errorf("layer %q parent = %q, want %q", name, l.Parent, parent)
		}
	}
	if l, _ := g.Layer("homepage"); len(l.Smoke.HTTP) == 0 || l.Smoke.HTTP[0].Expect == "" {
		t.Errorf("homepage declares no HTTP probe: %+v", l.Smoke)
	}
	if l, _ := g.Layer("database"); !l.Smoke.MariaDB {
		t.Errorf("database declares no MariaDB probe")
	}
}

func TestProductContainerfilesLintClean(t *testing.T) {
	dir := "../../containerfiles"
	g, err := loadDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Lint(os.DirFS(dir), ".", dir, g); err != nil {
		t.Fatalf("product Containerfiles must lint clean: %v", err)
	}
}

// TestBrokenVariants loads every folder in testdata and checks that it fails with the right message, naming the
// file and the line.
func TestBrokenVariants(t *testing.T) {
	cases := []struct {
		dir      string
		wantFile string // file named in the error
		wantLine int
		wantMsg  string
	}{
		{"cycle", "layers.yaml", 3, "cycle in the layer graph: a -> b -> a"},
		{"unknown-parent", "layers.yaml", 3, `layer "httpd": unknown parent "sooe"`},
		{"duplicate-name", "layers.yaml", 5, `duplicate layer name "httpd" (first declared on line 3)`},
		{"missing-containerfile", "layers.yaml", 3, `layer "httpd": Containerfile "httpd/Containerfile" does not exist`},
		{"from-not-base-image", "httpd/Containerfile", 3, "the final stage must be FROM ${BASE_IMAGE} (found FROM quay.io/example/soe:latest)"},
		{"missing-lint", "httpd/Containerfile", 5, "the last instruction must be RUN bootc container lint (found RUN systemctl enable httpd)"},
		{"copy-under-var", "httpd/Containerfile", 4, "COPY writes to /var/www/html/"},
	}
	for _, tc := range cases {
		t.Run(tc.dir, func(t *testing.T) {
			dir := filepath.Join("testdata", tc.dir)
			err := Check(os.DirFS(dir), ".", dir)
			if err == nil {
				t.Fatalf("%s: expected an error", dir)
			}
			wantLoc := filepath.Join(dir, tc.wantFile) + ":" + strconv.Itoa(tc.wantLine) + ":"
			if !strings.Contains(err.Error(), wantLoc) {
				t.Errorf("error does not name %q:\n%v", wantLoc, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error does not say %q:\n%v", tc.wantMsg, err)
			}
		})
	}
}

func TestSeedHomepageBugIsNotALintError(t *testing.T) {
	dir := filepath.Join("testdata", "homepage-from-soe")
	if err := Check(os.DirFS(dir), ".", dir); err != nil {
		t.Fatalf("homepage FROM soe is valid to the graph and lint (the smoke test catches it): %v", err)
	}
}

func TestGraphFileErrors(t *testing.T) {
	cf := &fstest.MapFile{Data: []byte("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN bootc container lint\n")}
	cases := []struct {
		name, yaml, want string
	}{
		{"no file", "", "graph file not found"},
		{"not a list", "layers: soe\n", `g/layers.yaml:1: "layers" must be a list`},
		{"unknown field", "layers:\n  - name: soe\n    parnet: x\n", "g/layers.yaml:2: field parnet not found"},
		{"bad name", "layers:\n  - name: Soe_\n", `g/layers.yaml:2: layer name "Soe_"`},
		{"no name", "layers:\n  - parent: soe\n", "g/layers.yaml:2: layer without a name"},
		{"own parent", "layers:\n  - name: soe\n    parent: soe\n", `layer "soe" is its own parent`},
		{"context escapes", "layers:\n  - name: soe\n    context: ../x\n", `context "../x" must be a folder inside`},
		{"empty", "layers: []\n", "declares no layers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{"g/soe/Containerfile": cf}
			if tc.yaml != "" {
				fsys["g/layers.yaml"] = &fstest.MapFile{Data: []byte(tc.yaml)}
			}
			_, err := Load(fsys, "g/layers.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
			var le *Error
			if !errors.As(err, &le) {
				t.Errorf("error %T is not a *layers.Error", err)
			}
		})
	}
}

func TestAncestorsDescendantsSubgraph(t *testing.T) {
	g, err := loadDir(t, "../../containerfiles")
	if err != nil {
		t.Fatal(err)
	}
	chain, err := g.Ancestors("homepage")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"soe", "httpd", "homepage"}; !reflect.DeepEqual(chain, want) {
		t.Errorf("ancestors = %v, want %v", chain, want)
	}
	if _, err := g.Ancestors("nope"); err == nil || !strings.Contains(err.Error(), `no layer named "nope"`) {
		t.Errorf("ancestors of unknown layer: %v", err)
	}
	if got, want := g.Descendants("httpd"), []string{"homepage", "httpd"}; !reflect.DeepEqual(got, want) {
		t.Errorf("descendants = %v, want %v", got, want)
	}
	if got, want := g.Descendants("soe"), []string{"database", "homepage", "httpd", "soe"}; !reflect.DeepEqual(got, want) {
		t.Errorf("descendants = %v, want %v", got, want)
	}
	sub, err := g.Subgraph(chain)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"soe"}, {"httpd"}, {"homepage"}}; !reflect.DeepEqual(sub.Levels(), want) {
		t.Errorf("subgraph levels = %v, want %v", sub.Levels(), want)
	}
	if _, err := g.Subgraph([]string{"homepage"}); err == nil || !strings.Contains(err.Error(), `needs its parent "httpd"`) {
		t.Errorf("subgraph without parents: %v", err)
	}
}

func TestCopiesFrom(t *testing.T) {
	yes := "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY imagemode-trust/ /\nRUN bootc container lint\n"
	no := "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY files/ /\nRUN bootc container lint\n"
	other := "FROM x AS b\nCOPY imagemode-trust/ /t\nFROM y\nCOPY --from=b /t /\n"
	if !CopiesFrom([]byte(yes), "imagemode-trust") || CopiesFrom([]byte(no), "imagemode-trust") || CopiesFrom([]byte(other), "imagemode-trust") {
		t.Error("CopiesFrom misjudged a Containerfile")
	}
	data, err := os.ReadFile("../../containerfiles/soe/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !CopiesFrom(data, "imagemode-trust") {
		t.Error("the product SOE does not copy imagemode-trust/")
	}
}
