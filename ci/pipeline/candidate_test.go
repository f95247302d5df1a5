package pipeline

import (
	"os"
	"strings"
	"testing"

	"github.com/imagemode/imagemode/ci/internal/regtest"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/tags"
)

func TestCandidateReport(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	rep, err := f.p.BuildAll(ctx, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	g, err := layers.Open(os.DirFS("../../containerfiles"), ".", "containerfiles")
	if err != nil {
		t.Fatal(err)
	}
	got, err := CandidateReport(ctx, f.reg, g, f.cfg.Registry, "centos-stream-9", commit)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Layers) != len(rep.Layers) || got.Commit != commit || !got.Candidates {
		t.Fatalf("report from the registry: %+v", got)
	}
	for _, l := range rep.Layers {
		c, ok := got.Layer(l.Name)
		if !ok || c.Digest != l.Digest || c.ParentDigest != l.ParentDigest || c.Ref != l.Ref {
			t.Errorf("%s: %+v, built %+v", l.Name, c, l)
		}
	}
	// A candidate that does not chain to its parent's candidate: not one run.
	stray, err := regtest.Push(ctx, f.cfg.Registry+"/httpd:stray", 256, 1, map[string]string{layers.LabelBaseDigest: "sha256:" + strings.Repeat("9", 64)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.reg.Tag(ctx, f.cfg.Registry+"/httpd@"+stray, tags.Candidate(commit, "centos-stream-9")); err != nil {
		t.Fatal(err)
	}
	if _, err := CandidateReport(ctx, f.reg, g, f.cfg.Registry, "centos-stream-9", commit); err == nil || !strings.Contains(err.Error(), `layer "httpd"`) {
		t.Errorf("a broken chain: %v", err)
	}
	if _, err := CandidateReport(ctx, f.reg, g, f.cfg.Registry, "centos-stream-9", strings.Repeat("e", 40)); err == nil || !strings.Contains(err.Error(), "no candidate") {
		t.Errorf("a commit without candidates: %v", err)
	}
}
