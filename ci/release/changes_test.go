package release

import (
	"strings"
	"testing"

	"github.com/imagemode/imagemode/ci/sbom"
)

// changesOf indexes a report's package changes by layer.
func changesOf(t *testing.T, rep *Report) map[string]LayerChanges {
	t.Helper()
	out := map[string]LayerChanges{}
	for _, c := range rep.Changes {
		out[c.Layer] = c
	}
	if len(out) != len(family) {
		t.Fatalf("package changes for %d layers, want %d: %+v", len(out), len(family), rep.Changes)
	}
	return out
}

// A promotion says what it changes on the hosts following each floating tag; a dry run says the same and moves
// nothing, without the signing key.
func TestPromotionShowsPackageChangesAndDryRunMovesNothing(t *testing.T) {
	f := newFixture(t)
	f.build(t)
	rep, err := f.promote(t, f.cfg("v1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range changesOf(t, rep) {
		if c.From != "" || c.Note != "first release: 2 packages" || c.Follows != f.ns+"/"+name+":"+profile {
			t.Errorf("%s: first release: %+v", name, c)
		}
	}
	v1 := f.floatingAt(t)

	// The next commit adds a package to httpd (and homepage, built on it) and upgrades one in database.
	const c2 = "d00d000123456789abcdef0123456789abcdef01"
	f.packages = map[string]map[string]string{
		"httpd":    {"base-files": "12.4+deb12u11", "httpd-pkg": "1.0-1", "mod-extra": "2.0-1"},
		"homepage": {"base-files": "12.4+deb12u11", "homepage-pkg": "1.0-1", "mod-extra": "2.0-1"},
		"database": {"base-files": "12.4+deb12u11", "database-pkg": "1.0-2"},
	}
	f.buildAt(t, c2, "run2")
	cfg := f.cfg("v1.1.0")
	cfg.Commit, cfg.DryRun = c2, true
	dry, err := New(f.reg, f.ver, fast).Promote(t.Context(), cfg) // no signer: a dry run needs no key
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || dry.Complete || len(dry.Moves) != 0 {
		t.Errorf("dry run: DryRun %v, Complete %v, moves %+v", dry.DryRun, dry.Complete, dry.Moves)
	}
	if got := f.floatingAt(t); strings.Join(mapValues(got), ",") != strings.Join(mapValues(v1), ",") {
		t.Errorf("a dry run moved floating tags: %v -> %v", v1, got)
	}
	if ok, err := f.reg.Exists(t.Context(), f.ns+"/soe:1.1.0-"+profile); err != nil || ok {
		t.Errorf("a dry run wrote the exact tag (%v, %v)", ok, err)
	}
	want := map[string][]sbom.Change{
		"soe":      {},
		"httpd":    {{Kind: sbom.Added, Type: "deb", Name: "mod-extra", Arch: "amd64", To: "2.0-1"}},
		"homepage": {{Kind: sbom.Added, Type: "deb", Name: "mod-extra", Arch: "amd64", To: "2.0-1"}},
		"database": {{Kind: sbom.Upgraded, Type: "deb", Name: "database-pkg", Arch: "amd64", From: "1.0-1", To: "1.0-2"}},
	}
	check := func(what string, rep *Report) {
		t.Helper()
		for name, c := range changesOf(t, rep) {
			if c.From != v1[name] || c.To != f.digests[name] || c.Note != "" {
				t.Errorf("%s %s: from %s to %s (note %q), want from %s to %s", what, name, c.From, c.To, c.Note, v1[name], f.digests[name])
			}
			if len(c.Changes) != len(want[name]) {
				t.Errorf("%s %s: changes %+v, want %+v", what, name, c.Changes, want[name])
				continue
			}
			for i := range want[name] {
				if c.Changes[i] != want[name][i] {
					t.Errorf("%s %s: change %+v, want %+v", what, name, c.Changes[i], want[name][i])
				}
			}
		}
	}
	check("dry run", dry)
	text := dry.Text()
	for _, s := range []string{"httpd " + profile + " (hosts following " + f.ns + "/httpd:" + profile + "): 1 added", "+ mod-extra 2.0-1",
		"~ database-pkg 1.0-1 → 1.0-2", "soe " + profile + " (hosts following " + f.ns + "/soe:" + profile + "): no package changes", "dry run: everything verifies; nothing was moved"} {
		if !strings.Contains(text, s) {
			t.Errorf("the dry run's text lacks %q:\n%s", s, text)
		}
	}
	md := ChangesMarkdown("package changes", dry.Changes)
	if !strings.Contains(md, "| added | mod-extra |  | 2.0-1 |") || !strings.Contains(md, "| upgraded | database-pkg | 1.0-1 | 1.0-2 |") {
		t.Errorf("markdown:\n%s", md)
	}

	cfg.DryRun = false
	rep, err = f.promote(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	check("promotion", rep)
	if got := f.floatingAt(t); got["httpd"] != f.digests["httpd"] {
		t.Errorf("the promotion did not move httpd's floating tag: %v", got)
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, l := range family {
		out = append(out, m[l.Name])
	}
	return out
}

// Differ.Run compares a run's layers with the releases their floating tags name; Diff compares any two images,
// from their signed SBOMs or, without a verifier, from the images themselves.
func TestDifferComparesARunAndAnyTwoImages(t *testing.T) {
	f := newFixture(t)
	f.build(t)
	if _, err := f.promote(t, f.cfg("v1.0.0")); err != nil {
		t.Fatal(err)
	}
	v1 := f.floatingAt(t)
	f.packages = map[string]map[string]string{"soe": {"base-files": "12.4+deb12u12", "soe-pkg": "1.0-1"}}
	f.pushFamily(t, "d00d000123456789abcdef0123456789abcdef01")
	for _, d := range []*Differ{{Reg: f.reg, Verifier: f.ver}, {Reg: f.reg, ToolVersion: "test"}} {
		cs, err := d.Diff(t.Context(), f.ns+"/soe@"+v1["soe"], f.ref("soe"))
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 1 || cs[0].Kind != sbom.Upgraded || cs[0].Name != "base-files" || cs[0].To != "12.4+deb12u12" {
			t.Errorf("verifier %v: changes %+v", d.Verifier != nil, cs)
		}
	}
	// Signed SBOMs only: an image without one is named.
	other := f.image(t, "soe", "", baseDigest, commit, "unsigned")
	if _, err := (&Differ{Reg: f.reg, Verifier: f.ver}).Diff(t.Context(), other, f.ref("soe")); err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("an image without a signed SBOM: %v", err)
	}
}
