package pipeline

import (
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/build"
	"github.com/imagemode/imagemode/ci/buildstep"
	"github.com/imagemode/imagemode/ci/internal/regtest"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/profile"
	"github.com/imagemode/imagemode/ci/report"
)

// externalRun drives a run the way the Dagger module and the CLI do: every step's progress goes through JSON (a
// step file), build stands in for the engine's builds. It returns the report, the error, and the step files.
func externalRun(t *testing.T, f *fixture, cfg Config, build func(b buildstep.Build) buildstep.Result) (*report.Report, error, [][]buildstep.Build) {
	t.Helper()
	ctx := t.Context()
	cfg.External = true
	p := New(nil, f.reg)
	pr, err := p.Begin(ctx, cfg)
	var steps [][]buildstep.Build
	for err == nil && !pr.Finished {
		builds, berr := ExternalBuilds(cfg, pr)
		if berr != nil {
			t.Fatal(berr)
		}
		steps = append(steps, builds)
		data, jerr := json.Marshal(pr)
		if jerr != nil {
			t.Fatal(jerr)
		}
		var next Progress // a new process reads the step file
		if jerr := json.Unmarshal(data, &next); jerr != nil {
			t.Fatal(jerr)
		}
		var outcomes []Outcome
		for _, b := range builds {
			r := build(b)
			o := Outcome{Layer: r.Layer}
			if r.Error != "" {
				o.Err = errors.New(r.Error)
			} else {
				o.Result.Digest = r.Digest
			}
			outcomes = append(outcomes, o)
		}
		pr, err = p.Advance(ctx, cfg, &next, outcomes)
	}
	if pr == nil {
		return nil, err, steps
	}
	return pr.Result(time.Now()), err, steps
}

// push stands in for DockerBuild + Publish: an image with the build's labels at its target.
func push(t *testing.T) func(b buildstep.Build) buildstep.Result {
	return func(b buildstep.Build) buildstep.Result {
		d, err := regtest.Push(t.Context(), b.Target, 256, 1, b.Labels)
		if err != nil {
			return buildstep.Result{Layer: b.Layer, Error: err.Error()}
		}
		return buildstep.Result{Layer: b.Layer, Digest: d}
	}
}

func TestExternalStepsBuildTheFamilyLevelByLevel(t *testing.T) {
	f := newFixture(t)
	rep, err, steps := externalRun(t, f, f.cfg, push(t))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Candidates || len(rep.Layers) != 4 {
		t.Fatalf("candidates %v, %d layers", rep.Candidates, len(rep.Layers))
	}
	var names []string
	for _, s := range steps {
		var lv []string
		for _, b := range s {
			lv = append(lv, b.Layer)
		}
		names = append(names, strings.Join(lv, "+"))
	}
	if got := strings.Join(names, " "); got != "soe database+httpd homepage" && got != "soe httpd+database homepage" {
		t.Errorf("steps %q, want one step per level", got)
	}
	hp, _ := rep.Layer("homepage")
	httpd, _ := rep.Layer("httpd")
	last := steps[len(steps)-1][0]
	if last.BuildArgs[layers.BaseImageArg] != httpd.Ref || hp.ParentDigest != httpd.Digest {
		t.Errorf("homepage built FROM %q (parent digest %s), want %s", last.BuildArgs[layers.BaseImageArg], hp.ParentDigest, httpd.Ref)
	}
	// The step carries the context's files themselves, exactly the listed ones.
	if len(last.Context) != len(last.Files) || len(last.Files) == 0 {
		t.Errorf("homepage step: %d context files for %d listed", len(last.Context), len(last.Files))
	}
	for i, cf := range last.Context {
		want, err := fs.ReadFile(f.cfg.Source, path.Join(last.ContextDir, last.Files[i]))
		if err != nil || cf.Path != last.Files[i] || string(cf.Data) != string(want) || (cf.Mode != 0o644 && cf.Mode != 0o755) {
			t.Errorf("context file %d: %q (mode %o, %d bytes) against %q: %v", i, cf.Path, cf.Mode, len(cf.Data), last.Files[i], err)
		}
	}
	if last.Labels[layers.LabelInputs] != hp.InputDigest || hp.InputDigest == "" {
		t.Errorf("homepage inputs label %q, report %q", last.Labels[layers.LabelInputs], hp.InputDigest)
	}
	if _, ok := last.BuildArgs["SOURCE_DATE_EPOCH"]; ok {
		t.Error("SOURCE_DATE_EPOCH passed though no epoch was asked for")
	}
	for _, l := range rep.Layers {
		d, err := f.reg.Digest(t.Context(), l.CandidateRef())
		if err != nil || d != l.Digest {
			t.Errorf("%s: candidate tag at %s (%v), want %s", l.Name, d, err, l.Digest)
		}
	}

	// The same inputs in a build driven in this process: the same input digest of the root (one pipeline, two
	// drivers; the children's differ only by their parents' random digests here).
	cfg := f.cfg
	cfg.RunID = "r2"
	in, err := f.p.BuildAll(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustLayer(t, in, "soe"), mustLayer(t, rep, "soe"); a.InputDigest != b.InputDigest {
		t.Errorf("soe: input digest %s in process, %s through steps", a.InputDigest, b.InputDigest)
	}
}

func TestExternalStepsLeaveOutMountsOfAbsentSecrets(t *testing.T) {
	f := newFixture(t)
	_, err, steps := externalRun(t, f, f.cfg, push(t))
	if err != nil {
		t.Fatal(err)
	}
	soe := steps[0][0]
	cf, ok := soe.ExtraFiles[soe.Containerfile]
	if !ok || strings.Contains(cf, "type=secret") || !strings.Contains(cf, "bootc container lint") {
		t.Errorf("soe without secrets: Containerfile override %v:\n%s", ok, cf)
	}

	// With the entitlement given, the Containerfile goes as written and the secrets are named.
	prof, err := profile.Resolve("rhel-9.6", f.base)
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg
	cfg.Profile, cfg.RunID = prof, "rhel"
	cfg.Secrets = []string{profile.SecretEntitlementCert, profile.SecretEntitlementKey, profile.SecretRHSMCA}
	cfg.RegistryAuth = []string{strings.Split(f.base, "/")[0]}
	_, err, steps = externalRun(t, f, cfg, push(t))
	if err != nil {
		t.Fatal(err)
	}
	soe = steps[0][0]
	cf = soe.ExtraFiles[soe.Containerfile]
	if !strings.Contains(cf, "id=entitlement-cert") || !strings.Contains(cf, "id=rhsm-ca") || strings.Contains(cf, "id=bootc-user-password-hash") {
		t.Errorf("with the entitlement but no password hash, soe's Containerfile is:\n%s", cf)
	}
	db := steps[1][0]
	if db.Layer != "database" {
		db = steps[1][1]
	}
	if _, ok := db.ExtraFiles[db.Containerfile]; ok {
		t.Error("database's Containerfile was rewritten though every secret it mounts was given")
	}
	if strings.Join(soe.Secrets, ",") != "entitlement-cert,entitlement-key,rhsm-ca" {
		t.Errorf("secrets %v", soe.Secrets)
	}
}

func TestExternalStepsApplyTheEpochAfterThePush(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.SourceDateEpoch = 1764000000
	pushed := map[string]string{}
	rep, err, steps := externalRun(t, f, cfg, func(b buildstep.Build) buildstep.Result {
		r := push(t)(b)
		pushed[b.Layer] = r.Digest
		return r
	})
	if err != nil {
		t.Fatal(err)
	}
	if steps[0][0].BuildArgs["SOURCE_DATE_EPOCH"] != "1764000000" {
		t.Errorf("build args %v", steps[0][0].BuildArgs)
	}
	for _, l := range rep.Layers {
		if l.Digest == pushed[l.Name] {
			t.Errorf("%s: the pushed image was not retimed", l.Name)
		}
		c, err := f.reg.Config(t.Context(), l.Ref)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Created.Time.Equal(time.Unix(1764000000, 0)) {
			t.Errorf("%s created %s", l.Name, c.Created.Time)
		}
		if d, err := f.reg.Digest(t.Context(), l.Repository+":"+l.RunTag); err != nil || d != l.Digest {
			t.Errorf("%s: run tag at %s (%v), want the retimed %s", l.Name, d, err, l.Digest)
		}
	}
	// Children are built FROM the retimed parent.
	httpd, _ := rep.Layer("httpd")
	if hp, _ := rep.Layer("homepage"); hp.ParentDigest != httpd.Digest {
		t.Errorf("homepage FROM %s, httpd is %s", hp.ParentDigest, httpd.Digest)
	}
}

func TestExternalStepFailureStopsAtItsLevel(t *testing.T) {
	f := newFixture(t)
	built := map[string]bool{}
	rep, err, _ := externalRun(t, f, f.cfg, func(b buildstep.Build) buildstep.Result {
		built[b.Layer] = true
		if b.Layer == "database" {
			return buildstep.Result{Layer: b.Layer, Error: "dnf: no package mariadb-server"}
		}
		return push(t)(b)
	})
	if err == nil || !strings.Contains(err.Error(), "level 1") || !strings.Contains(err.Error(), "mariadb-server") {
		t.Fatalf("error %v", err)
	}
	if rep == nil || rep.Candidates || built["homepage"] {
		t.Fatalf("report %+v, homepage built %v", rep, built["homepage"])
	}
	if _, ok := rep.Layer("httpd"); !ok {
		t.Error("the partial report lacks httpd, built in the failed level")
	}
	for _, l := range rep.Layers {
		tags, err := f.reg.Tags(t.Context(), l.Repository)
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range tags {
			if strings.HasPrefix(tg, "sha-") {
				t.Errorf("%s has candidate tag %s after a failed run", l.Name, tg)
			}
		}
	}
}

func TestAdvanceChecksTheStep(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.External = true
	p := New(nil, f.reg)
	pr, err := p.Begin(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	other := cfg
	other.RunID = "r9"
	if _, err := p.Advance(t.Context(), other, pr, nil); err == nil || !strings.Contains(err.Error(), `run "r1"`) {
		t.Errorf("another run's arguments: %v", err)
	}
	// A digest the registry does not hold under the target is refused.
	if _, err := p.Advance(t.Context(), cfg, pr, []Outcome{{Layer: "soe", Result: buildResult("sha256:" + strings.Repeat("0", 64))}}); err == nil || !strings.Contains(err.Error(), "soe") {
		t.Errorf("an unpushed digest: %v", err)
	}
	pr, err = p.Begin(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Advance(t.Context(), cfg, pr, nil); err == nil || !strings.Contains(err.Error(), "reported nothing") {
		t.Errorf("no outcome: %v", err)
	}
}

func buildResult(digest string) build.Result { return build.Result{Digest: digest} }

func mustLayer(t *testing.T, rep *report.Report, name string) report.Layer {
	t.Helper()
	l, ok := rep.Layer(name)
	if !ok {
		t.Fatalf("no layer %q", name)
	}
	return l
}
