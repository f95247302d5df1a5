package release

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/tags"
)

// floatingAt reads where the channel tag <profile> of every layer points.
func (f *fixture) floatingAt(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, l := range family {
		d, err := f.reg.Digest(t.Context(), f.ns+"/"+l.Name+":"+profile)
		if err != nil {
			t.Fatal(err)
		}
		out[l.Name] = d
	}
	return out
}

func (f *fixture) promote(t *testing.T, cfg Config) (*Report, error) {
	t.Helper()
	return New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(t.Context(), cfg)
}

// Exact tags written by hand onto a signed family whose smoke test failed are not a release: the floating tags do
// not follow them, the promotion says so, and the honest promotion still completes.
func TestForgedExactTagsAreIgnoredAndReported(t *testing.T) {
	f := newFixture(t)
	good := f.buildAt(t, commit, "run1")
	if _, err := f.promote(t, f.cfg("v1.0.0")); err != nil {
		t.Fatal(err)
	}
	const other = "0ddba110123456789abcdef0123456789abcdef0"
	f.pushFamily(t, other)
	f.run(t, other, "run2", map[string]string{"httpd": smoke.Fail})
	for _, l := range family { // the forgery: exact tags of a newer version on the failed, signed family
		if err := f.reg.Tag(t.Context(), f.ref(l.Name), "1.1.0-"+profile); err != nil {
			t.Fatal(err)
		}
	}
	f.digests = good
	rep, err := f.promote(t, f.cfg("v1.0.0"))
	if err != nil {
		t.Fatalf("the honest rerun failed: %v", err)
	}
	if !sameDigests(f.floatingAt(t), good) {
		t.Errorf("the channel follows the forged tags: %v, want %v", f.floatingAt(t), good)
	}
	if len(rep.Releases) != 1 || rep.Releases[0].Record.Release != "1.0.0" || !sameDigests(rep.Releases[0].Record.Digests(), good) ||
		rep.Releases[0].Image != f.ns+"/soe@"+good["soe"] {
		t.Errorf("the report's release records: %+v", rep.Releases)
	}
	if len(rep.Ignored) != 1 || !strings.Contains(rep.Ignored[0], "1.1.0-"+profile) || !strings.Contains(rep.Ignored[0], "never followed") {
		t.Errorf("the forged tags were not reported: %v", rep.Ignored)
	}
	for _, m := range rep.Moves {
		if m.Status == Kept {
			t.Errorf("%s:%s kept for a newer release: %s", m.Repository, m.Tag, m.Note)
		}
	}
}

// A newer release that no longer verifies stops the run; a hidden one does not let the floating tags move back;
// --rollback-to moves them back deliberately.
func TestFloatingTagsNeverMoveBackwards(t *testing.T) {
	setup := func(t *testing.T) (*fixture, map[string]string, map[string]string) {
		f := newFixture(t)
		old := f.buildAt(t, commit, "run1")
		if _, err := f.promote(t, f.cfg("v1.0.0")); err != nil {
			t.Fatal(err)
		}
		const next = "1eaf0123456789abcdef0123456789abcdef0123"
		newer := f.buildAt(t, next, "run2")
		c := f.cfg("v1.1.0")
		c.Commit = next
		if _, err := f.promote(t, c); err != nil {
			t.Fatal(err)
		}
		if !sameDigests(f.floatingAt(t), newer) {
			t.Fatal("1.1.0 is not on the channel")
		}
		f.digests = old
		return f, old, newer
	}
	t.Run("a newer release whose signature was re-pointed", func(t *testing.T) {
		f, old, newer := setup(t)
		// The attacker points httpd 1.1.0's signature tag at the signature manifest of httpd 1.0.0.
		sig := func(d string) string { return strings.Replace(d, ":", "-", 1) + ".sig" }
		src, err := f.reg.Digest(t.Context(), f.ns+"/httpd:"+sig(old["httpd"]))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.reg.Tag(t.Context(), f.ns+"/httpd@"+src, sig(newer["httpd"])); err != nil {
			t.Fatal(err)
		}
		_, err = f.promote(t, f.cfg("v1.0.0"))
		if err == nil || !strings.Contains(err.Error(), "release 1.1.0") || !strings.Contains(err.Error(), "layer httpd") {
			t.Fatalf("rerun of 1.0.0: %v, want a stop naming release 1.1.0 and layer httpd", err)
		}
		if !sameDigests(f.floatingAt(t), newer) {
			t.Errorf("the channel moved: %v", f.floatingAt(t))
		}
	})
	t.Run("a newer release hidden: its exact root tag deleted", func(t *testing.T) {
		f, _, newer := setup(t)
		// Registries delete tags by re-pointing them too; an attacker points soe:1.1.0 at an unsigned image.
		f.image(t, "soe", "", "sha256:"+strings.Repeat("d", 64), commit, "1.1.0-"+profile)
		_, err := f.promote(t, f.cfg("v1.0.0"))
		var be *BackwardsError
		if !errors.As(err, &be) || be.Current != "1.1.0" {
			t.Fatalf("rerun of 1.0.0: %v, want a refusal to move back from 1.1.0", err)
		}
		if !sameDigests(f.floatingAt(t), newer) {
			t.Errorf("the channel moved: %v", f.floatingAt(t))
		}
		// A deliberate rollback is allowed.
		c := f.cfg("v1.0.0")
		c.RollbackTo = "1.0.0"
		if _, err := f.promote(t, c); err != nil {
			t.Fatalf("--rollback-to 1.0.0: %v", err)
		}
		if got := f.floatingAt(t); !sameDigests(got, f.digests) {
			t.Errorf("after the rollback the channel is %v, want 1.0.0's %v", got, f.digests)
		}
	})
	t.Run("--rollback-to names another version", func(t *testing.T) {
		f, _, _ := setup(t)
		c := f.cfg("v1.0.0")
		c.RollbackTo = "0.9.0"
		if _, err := f.promote(t, c); err == nil || !strings.Contains(err.Error(), "--rollback-to 0.9.0") {
			t.Fatalf("mismatched --rollback-to: %v", err)
		}
	})
}

// A digest's newest verdict decides, whichever commit's run produced it: a later commit's run that failed a reused
// layer blocks its promotion under the earlier commit, even with the failed verdict itself removed.
func TestReusedDigestFailureBlocks(t *testing.T) {
	f := newFixture(t)
	f.build(t) // commit, run1: everything passes
	before := f.snapshotAtt(t)
	const later = "1a7e0123456789abcdef0123456789abcdef0123"
	for _, l := range family { // the later commit reuses every layer unchanged
		if err := f.reg.Tag(t.Context(), f.ref(l.Name), tags.Candidate(later, profile)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond)
	f.run(t, later, "run2", map[string]string{"database": smoke.Fail})
	f.rollback(t, before, "database") // the failed verdict removed from the database image
	_, err := f.promote(t, f.cfg("v1.0.0"))
	if err == nil || !strings.Contains(err.Error(), "run run2 of commit 1a7e01234567") || !strings.Contains(err.Error(), "newest verdict for a digest decides") {
		t.Fatalf("promotion of the earlier commit: %v", err)
	}
	if ts := f.releaseTags(t); len(ts) != 0 {
		t.Errorf("tags moved: %v", ts)
	}
}

// Without --expect-run, the commit's newest run decides: candidate tags re-pointed at an older build of the same
// commit (whose run passed) are refused, with no attestation touched.
func TestOlderBuildOfTheCommitRefused(t *testing.T) {
	f := newFixture(t)
	older := f.buildAt(t, commit, "run1")
	time.Sleep(10 * time.Millisecond)
	f.pushFamily(t, commit) // a rebuild of the same commit: new digests, candidate tags moved to them
	f.run(t, commit, "run2", map[string]string{"database": smoke.Fail})
	for name, d := range older { // the attack: candidate tags back on the older build
		if err := f.reg.Tag(t.Context(), f.ns+"/"+name+"@"+d, tags.Candidate(commit, profile)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := f.promote(t, f.cfg("v1.0.0"))
	if err == nil || !strings.Contains(err.Error(), "newest run of the commit (run run2)") {
		t.Fatalf("promotion of the re-pointed candidates: %v", err)
	}
	if ts := f.releaseTags(t); len(ts) != 0 {
		t.Errorf("tags moved: %v", ts)
	}
}
