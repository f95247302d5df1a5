package flow

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/build"
	"github.com/imagemode/imagemode/ci/internal/keytest"
	"github.com/imagemode/imagemode/ci/internal/regtest"
	"github.com/imagemode/imagemode/ci/pipeline"
	"github.com/imagemode/imagemode/ci/profile"
	"github.com/imagemode/imagemode/ci/provenance"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/sbom"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/smoke"
)

type fakeSmoker struct{ fail string }

func (f fakeSmoker) Smoke(ctx context.Context, rep *report.Report) ([]smoke.Verdict, error) {
	var out []smoke.Verdict
	for _, l := range rep.Layers {
		v := smoke.Verdict{Verdict: smoke.Pass, Image: l.Ref, Digest: l.Digest, Layer: l.Name, Mode: "ephemeral", Accel: "tcg", Started: time.Now().UTC()}
		if l.Name == f.fail {
			v.Verdict, v.Reason = smoke.Fail, "GET /: connection refused"
		}
		out = append(out, v)
	}
	return out, nil
}

func setup(t *testing.T, fail string) (*Flow, pipeline.Config, *signing.KeyVerifier) {
	t.Helper()
	host := regtest.Start(t, nil)
	reg := registry.New(registry.WithRetry(registry.Retry{Steps: 1}))
	base := host + "/upstream/base:1"
	if _, err := regtest.Push(t.Context(), base, 256, 1, nil); err != nil {
		t.Fatal(err)
	}
	prof, err := profile.Resolve("centos-stream-9", base)
	if err != nil {
		t.Fatal(err)
	}
	b := build.Func(func(ctx context.Context, req build.Request) (build.Result, error) {
		d, err := regtest.PushPackages(ctx, req.Target, req.Labels, map[string]string{"base-files": "12.4+deb12u11", req.Layer + "-pkg": "1.0-1"})
		repo := req.Target[:strings.LastIndex(req.Target, ":")]
		return build.Result{Digest: d, Ref: repo + "@" + d}, err
	})
	s, v, _ := keytest.Pair(t, reg, "pw")
	cfg := pipeline.Config{Source: os.DirFS("../../containerfiles"), Dir: ".", Registry: host + "/im", Profile: prof,
		Commit: strings.Repeat("c", 40), RunID: "ci1"}
	return &Flow{Pipeline: pipeline.New(b, reg), Signer: s, Anchors: reg, Smoker: fakeSmoker{fail: fail},
		Evidence: &Evidencer{Images: reg, Signer: s, BuilderID: "https://example.org/builder", ToolVersion: "test"}}, cfg, v
}

func TestCIPasses(t *testing.T) {
	f, cfg, v := setup(t, "")
	res, err := f.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != smoke.Pass || len(res.Signed) != 4 || len(res.Attested) != 4 {
		t.Fatalf("result: %+v", res)
	}
	for _, l := range res.Build.Layers {
		if err := v.Verify(t.Context(), l.Ref); err != nil {
			t.Errorf("%s not signed: %v", l.Name, err)
		}
		sts, err := v.Attestations(t.Context(), l.Ref, signing.PredicateSmoke)
		if err != nil {
			t.Fatalf("%s not attested: %v", l.Name, err)
		}
		vd, err := smoke.ParseVerdict(sts[0].Predicate)
		if err != nil || vd.Verdict != smoke.Pass || vd.Commit != cfg.Commit {
			t.Errorf("%s verdict %+v (%v)", l.Name, vd, err)
		}
	}
	if len(res.Evidence) != 4 {
		t.Fatalf("evidence for %d layers, want 4: %+v", len(res.Evidence), res.Evidence)
	}
	for _, l := range res.Build.Layers {
		sts, err := v.Attestations(t.Context(), l.Ref, sbom.PredicateType)
		if err != nil {
			t.Fatalf("%s: no SBOM: %v", l.Name, err)
		}
		pkgs, err := sbom.Packages(sts[0].Predicate)
		if err != nil {
			t.Fatal(err)
		}
		if len(pkgs) != 2 || pkgs[1].Name != l.Name+"-pkg" || pkgs[1].Version != "1.0-1" {
			t.Errorf("%s: SBOM packages %+v", l.Name, pkgs)
		}
		sts, err = v.Attestations(t.Context(), l.Ref, provenance.PredicateType)
		if err != nil {
			t.Fatalf("%s: no provenance: %v", l.Name, err)
		}
		p, err := provenance.Parse(sts[0].Predicate)
		if err != nil {
			t.Fatal(err)
		}
		parent := ""
		if l.Parent != "" {
			pl, _ := res.Build.Layer(l.Parent)
			parent = pl.Digest
		}
		if why := p.Check(provenance.Expect{Layer: l.Name, Profile: cfg.Profile.Name, Commit: cfg.Commit, ParentDigest: parent, BaseDigest: res.Build.BaseDigest}); why != "" {
			t.Errorf("%s: %s", l.Name, why)
		}
		if p.RunDetails.Builder.ID != "https://example.org/builder" || p.RunDetails.Metadata.InvocationID != "ci1" {
			t.Errorf("%s: run details %+v", l.Name, p.RunDetails)
		}
	}
	if !strings.Contains(res.Text(), "ci: PASS") {
		t.Errorf("text:\n%s", res.Text())
	}
}

func TestCIFailsOnASmokeFailureButAttestsIt(t *testing.T) {
	f, cfg, v := setup(t, "homepage")
	res, err := f.Run(t.Context(), cfg)
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "homepage (GET /: connection refused)") {
		t.Fatalf("error = %v", err)
	}
	if res.Verdict != smoke.Fail || len(res.Attested) != 4 {
		t.Fatalf("result: %+v", res)
	}
	hp, _ := res.Build.Layer("homepage")
	sts, err := v.Attestations(t.Context(), hp.Ref, signing.PredicateSmoke)
	if err != nil {
		t.Fatal(err)
	}
	if vd, _ := smoke.ParseVerdict(sts[0].Predicate); vd.Verdict != smoke.Fail {
		t.Errorf("the failed verdict was not attested: %+v", vd)
	}
	f.Signer = nil
	if _, err := f.Run(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "--key") {
		t.Errorf("no signer: %v", err)
	}
}

// Without the SBOM and provenance maker, ci refuses before it signs anything: a candidate without them could not
// be promoted.
func TestCIWithoutEvidenceSignsNothing(t *testing.T) {
	f, cfg, _ := setup(t, "")
	f.Evidence = nil
	res, err := f.Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "SBOMs and provenance") {
		t.Fatalf("err = %v", err)
	}
	if len(res.Signed) != 0 || len(res.Verdicts) != 0 {
		t.Errorf("signed %v, verdicts %d: nothing should have happened after the build", res.Signed, len(res.Verdicts))
	}
}
