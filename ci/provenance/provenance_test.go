package provenance

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/report"
)

const (
	commit = "0123456789abcdef0123456789abcdef01234567"
	dBase  = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	dSOE   = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	dHTTPD = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

func run() *report.Report {
	return &report.Report{
		Version: report.Version, RunID: "gh-42-1", Commit: commit, Registry: "registry.example/family", Profile: "rhel-9.6",
		BaseImage: "registry.redhat.io/rhel9/rhel-bootc:9.6", BaseDigest: dBase,
		Started: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC), DurationMS: 90_000,
		GraphFile: "containerfiles/layers.yaml", GraphDigest: "sha256:aaaa", BuildArgs: map[string]string{"HTTPD_PORT": "8080"},
		SourceURL: "https://github.com/acme/images",
		Layers: []report.Layer{
			{Name: "soe", Digest: dSOE, ParentDigest: dBase, BaseName: "registry.redhat.io/rhel9/rhel-bootc:9.6", Status: report.StatusBuilt,
				Containerfile: "containerfiles/soe/Containerfile", ContainerfileDigest: "sha256:bbbb", InputDigest: "sha256:cccc"},
			{Name: "httpd", Parent: "soe", Digest: dHTTPD, ParentDigest: dSOE, BaseName: "registry.example/family/soe@" + dSOE, Status: report.StatusBuilt,
				Containerfile: "containerfiles/httpd/Containerfile", ContainerfileDigest: "sha256:dddd", InputDigest: "sha256:eeee"},
			{Name: "database", Parent: "soe", Digest: dHTTPD, ParentDigest: dSOE, Status: report.StatusReused},
		},
	}
}

func TestNewDescribesTheBuild(t *testing.T) {
	rep := run()
	p, err := New(rep, rep.Layers[1], "https://github.com/acme/images/.github/workflows/main.yml@refs/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	data, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"buildType":"` + BuildType, `"layer":"httpd"`, `"profile":"rhel-9.6"`,
		`"path":"containerfiles/httpd/Containerfile","digest":"sha256:dddd"`, `"path":"containerfiles/layers.yaml","digest":"sha256:aaaa"`,
		`"buildArgs":{"HTTPD_PORT":"8080"}`, `"uri":"git+https://github.com/acme/images@` + commit, `"gitCommit":"` + commit,
		`"name":"parent","uri":"oci://registry.example/family/soe","digest":{"sha256":"2222`,
		`"name":"base","uri":"oci://registry.redhat.io/rhel9/rhel-bootc","digest":{"sha256":"1111`,
		`"builder":{"id":"https://github.com/acme/images/.github/workflows/main.yml@refs/heads/main"}`, `"invocationId":"gh-42-1"`,
		`"startedOn":"2026-12-07T10:00:00Z"`, `"finishedOn":"2026-12-07T10:01:30Z"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the provenance lacks %s:\n%s", want, data)
		}
	}
	if got.Dependency(DepSource) != commit || got.Dependency(DepParent) != dSOE || got.Dependency(DepBase) != dBase {
		t.Errorf("dependencies %q %q %q", got.Dependency(DepSource), got.Dependency(DepParent), got.Dependency(DepBase))
	}
	if why := got.Check(Expect{Layer: "httpd", Profile: "rhel-9.6", Commit: commit, ParentDigest: dSOE, BaseDigest: dBase}); why != "" {
		t.Errorf("Check refused its own build: %s", why)
	}
	root, err := New(rep, rep.Layers[0], "x")
	if err != nil {
		t.Fatal(err)
	}
	if root.Dependency(DepParent) != "" {
		t.Errorf("a root layer names a parent: %q", root.Dependency(DepParent))
	}
	if why := root.Check(Expect{Layer: "soe", Profile: "rhel-9.6", Commit: commit, BaseDigest: dBase}); why != "" {
		t.Errorf("Check refused the root: %s", why)
	}
}

func TestCheckNamesTheMismatch(t *testing.T) {
	rep := run()
	p, err := New(rep, rep.Layers[1], "x")
	if err != nil {
		t.Fatal(err)
	}
	good := Expect{Layer: "httpd", Profile: "rhel-9.6", Commit: commit, ParentDigest: dSOE, BaseDigest: dBase}
	for name, c := range map[string]struct {
		mutate func(*Expect)
		want   string
	}{
		"another layer":   {func(e *Expect) { e.Layer = "homepage" }, `layer "httpd"`},
		"another profile": {func(e *Expect) { e.Profile = "rhel-10" }, `profile "rhel-9.6"`},
		"another commit":  {func(e *Expect) { e.Commit = strings.Repeat("f", 40) }, "names commit " + commit},
		"another parent":  {func(e *Expect) { e.ParentDigest = dHTTPD }, "names parent " + dSOE},
		"another base":    {func(e *Expect) { e.BaseDigest = dHTTPD }, "names base " + dBase},
	} {
		e := good
		c.mutate(&e)
		if why := p.Check(e); !strings.Contains(why, c.want) {
			t.Errorf("%s: Check = %q, want it to say %q", name, why, c.want)
		}
	}
}

func TestNewRefusesWhatItCannotDescribe(t *testing.T) {
	rep := run()
	if _, err := New(rep, rep.Layers[2], "x"); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("a reused layer: err = %v, want ErrNotBuilt", err)
	}
	rep.GraphDigest = ""
	if _, err := New(rep, rep.Layers[0], "x"); err == nil || !strings.Contains(err.Error(), "layer graph digest") {
		t.Errorf("a report without the graph's digest: err = %v", err)
	}
}

func TestParseRefusesOtherBuildTypes(t *testing.T) {
	for _, in := range []string{`{}`, `{"buildDefinition":{"buildType":"https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"}}`, `[`} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%s) accepted it", in)
		}
	}
}

func TestBuilderID(t *testing.T) {
	t.Setenv("GITHUB_WORKFLOW_REF", "")
	t.Setenv("IMAGEMODE_BUILDER_ID", "")
	if id := BuilderID(); id != BuilderCLI {
		t.Errorf("on a host: %q", id)
	}
	t.Setenv("IMAGEMODE_BUILDER_ID", BuilderModule)
	if id := BuilderID(); id != BuilderModule {
		t.Errorf("in the module: %q", id)
	}
	t.Setenv("GITHUB_SERVER_URL", "https://github.com")
	t.Setenv("GITHUB_WORKFLOW_REF", "acme/images/.github/workflows/main.yml@refs/heads/main")
	if id := BuilderID(); id != "https://github.com/acme/images/.github/workflows/main.yml@refs/heads/main" {
		t.Errorf("on Actions: %q", id)
	}
}
