package release

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/provenance"
	"github.com/imagemode/imagemode/ci/record"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/sbom"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/tags"
)

// buildAt makes another complete candidate family of commit c in the same repositories (new digests), tested by a
// passing run with a record; it becomes the fixture's current family.
func (f *fixture) buildAt(t testing.TB, c, runID string) map[string]string {
	t.Helper()
	f.pushFamily(t, c)
	f.run(t, c, runID, nil)
	out := map[string]string{}
	for k, v := range f.digests {
		out[k] = v
	}
	return out
}

// pushFamily pushes and signs the family at commit c as its candidate (no verdicts, no record); it becomes the
// fixture's current family. It returns the images' references, parents first.
func (f *fixture) pushFamily(t testing.TB, c string) []string {
	t.Helper()
	f.digests = map[string]string{}
	cand := tags.Candidate(c, profile)
	base := baseDigest
	var refs []string
	for _, l := range family {
		parentDigest := base
		if l.Parent != "" {
			parentDigest = f.digests[l.Parent]
		}
		ref := f.image(t, l.Name, l.Parent, parentDigest, c, cand)
		_, d, _ := strings.Cut(ref, "@")
		f.digests[l.Name] = d
		if err := f.signer.Sign(t.Context(), ref); err != nil {
			t.Fatal(err)
		}
		f.evidence(t, f.signer, ref, l, c, parentDigest, base)
		refs = append(refs, ref)
	}
	return refs
}

// evidence attests the SBOM (made from the image) and the provenance of the built layer ref with s: commit c,
// built FROM parentDigest (the base's for the root), base the chain's base digest.
func (f *fixture) evidence(t testing.TB, s signing.Signer, ref string, l Layer, c, parentDigest, base string) {
	t.Helper()
	f.attestProvenance(t, s, ref, l, c, parentDigest, base)
	f.attestSBOM(t, s, ref)
}

func (f *fixture) attestProvenance(t testing.TB, s signing.Signer, ref string, l Layer, c, parentDigest, base string) {
	t.Helper()
	repo, d, _ := strings.Cut(ref, "@")
	rep := &report.Report{Version: report.Version, RunID: "run-" + c[:7], Commit: c, Registry: f.ns, Profile: profile,
		BaseImage: "registry.example/base:1", BaseDigest: base, Started: time.Now().UTC(), GraphFile: "containerfiles/layers.yaml", GraphDigest: "sha256:" + strings.Repeat("5", 64)}
	lr := report.Layer{Name: l.Name, Parent: l.Parent, Repository: repo, Digest: d, Ref: ref, ParentDigest: parentDigest, Status: report.StatusBuilt,
		BaseName: "registry.example/base:1", Containerfile: "containerfiles/" + l.Name + "/Containerfile", ContainerfileDigest: "sha256:" + strings.Repeat("6", 64)}
	p, err := provenance.New(rep, lr, "https://example.org/tests")
	if err != nil {
		t.Fatal(err)
	}
	data, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Attest(t.Context(), ref, provenance.PredicateType, data); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) attestSBOM(t testing.TB, s signing.Signer, ref string) {
	t.Helper()
	img, err := f.reg.Image(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := sbom.Generate(t.Context(), img, ref, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Attest(t.Context(), ref, sbom.PredicateType, doc); err != nil {
		t.Fatal(err)
	}
}

// attTag is the tag of an image's attestations.
func attTag(digest string) string { return strings.Replace(digest, ":", "-", 1) + ".att" }

// snapshotAtt remembers the manifest every image's attestation tag points at now (what an attacker can re-point it
// back to later: registries keep old manifests).
func (f *fixture) snapshotAtt(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, l := range family {
		d, err := f.reg.Digest(t.Context(), f.ns+"/"+l.Name+":"+attTag(f.digests[l.Name]))
		if err != nil {
			t.Fatal(err)
		}
		out[l.Name] = d
	}
	_, anchor, err := record.Anchor(commit, profile)
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.reg.Digest(t.Context(), f.ns+"/soe:"+attTag(anchor))
	if err != nil {
		t.Fatal(err)
	}
	out["anchor"] = d
	return out
}

// rollback re-points the attestation tags of the given layers to a snapshot: a registry writer without the key.
func (f *fixture) rollback(t *testing.T, snap map[string]string, layers ...string) {
	t.Helper()
	for _, l := range layers {
		repo, subject := f.ns+"/"+l, f.digests[l]
		if l == "anchor" { // the commit's run anchor, in the root's repository
			_, a, err := record.Anchor(commit, profile)
			if err != nil {
				t.Fatal(err)
			}
			repo, subject = f.ns+"/soe", a
		}
		if err := f.reg.Tag(t.Context(), repo+"@"+snap[l], attTag(subject)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVerdictFreshnessAttacks: a registry writer without the key cannot make promotion ignore a newer failed run.
func TestVerdictFreshnessAttacks(t *testing.T) {
	all := []string{"soe", "httpd", "database", "homepage", "anchor"}
	setup := func(t *testing.T) (*fixture, map[string]string) {
		f := newFixture(t)
		f.build(t) // run1: every layer passes, with its record
		before := f.snapshotAtt(t)
		time.Sleep(10 * time.Millisecond)
		f.run(t, commit, "run2", map[string]string{"database": smoke.Fail}) // a newer run fails the database
		return f, before
	}
	cases := []struct {
		name   string
		attack func(t *testing.T, f *fixture, before map[string]string)
		expect string
		want   string
	}{
		{"the failed verdict deleted", func(t *testing.T, f *fixture, before map[string]string) {
			f.rollback(t, before, "database")
		}, "", "run run2's record says its smoke test failed"},
		{"the failed verdict and the newer record deleted", func(t *testing.T, f *fixture, before map[string]string) {
			f.rollback(t, before, "database", "soe", "anchor")
		}, "", "after the run record of run run1"},
		{"an older record replayed against the expected run", func(t *testing.T, f *fixture, before map[string]string) {
			f.rollback(t, before, all...)
		}, "run2", "no signed run record of run run2"},
		{"the newer record deleted, the verdicts kept", func(t *testing.T, f *fixture, before map[string]string) {
			f.rollback(t, before, "soe", "anchor")
		}, "", "the smoke test failed (database did not answer)"},
		{"the newer record deleted from the root, kept on the anchor", func(t *testing.T, f *fixture, before map[string]string) {
			f.rollback(t, before, "soe", "database")
		}, "", "is not among the image's signed verdicts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, before := setup(t)
			c.attack(t, f, before)
			cfg := f.cfg("v1.0.0")
			cfg.ExpectRun = c.expect
			rep, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(t.Context(), cfg)
			var re *RefusedError
			if err == nil || !errors.As(err, &re) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("promotion after the attack: %v; want a refusal saying %q", err, c.want)
			}
			if rep.Refused == "" || strings.Contains(rep.Text(), "INCOMPLETE") {
				t.Errorf("the report does not say REFUSED:\n%s", rep.Text())
			}
			if want := fmt.Sprintf("refused after %d image(s) verified", len(rep.Verified)); !strings.Contains(rep.Text(), want) || len(rep.Verified) == 0 {
				t.Errorf("the summary does not say %q (layers verified before the refusal: %d):\n%s", want, len(rep.Verified), rep.Text())
			}
			if ts := f.releaseTags(t); len(ts) != 0 {
				t.Errorf("tags moved: %v", ts)
			}
		})
	}
	// What remains (ci/record's threat model): rolling back every attestation to the older run leaves a consistent
	// older state that promotion without --expect-run cannot tell apart; --expect-run refuses it (above). This pins
	// the documented limit: if it ever changes, the README's threat model must change with it.
	t.Run("a full rollback without --expect-run is the documented limit", func(t *testing.T) {
		f, before := setup(t)
		f.rollback(t, before, all...)
		if _, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(t.Context(), f.cfg("v1.0.0")); err != nil {
			t.Fatalf("the documented limit no longer holds (update the threat model): %v", err)
		}
	})
	t.Run("no record at all", func(t *testing.T) {
		f := newFixture(t)
		for _, ref := range f.pushFamily(t, commit) {
			if err := f.signer.Attest(t.Context(), ref, "https://imagemode.dev/attestations/smoke-test/v1", verdict(ref, smoke.Pass)); err != nil {
				t.Fatal(err)
			}
		}
		_, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(t.Context(), f.cfg("v1.0.0"))
		if err == nil || !strings.Contains(err.Error(), "no signed run record") {
			t.Fatalf("promotion without a run record: %v", err)
		}
	})
}

// jitter delays every registry request by up to max: concurrent promotions interleave their writes.
func jitter(max time.Duration) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Duration(rand.Int64N(int64(max))))
			h.ServeHTTP(w, r)
		})
	}
}

// TestConcurrentPromotions runs two promotions at once, again and again, with random delays: the newest release
// always ends on the floating tags, a release's layers are never mixed, and the same version from two commits
// ends with one whole release and the other run failing.
func TestConcurrentPromotions(t *testing.T) {
	const rounds = 6
	check := func(t *testing.T, f *fixture, tag string, want map[string]string) {
		t.Helper()
		for _, l := range family {
			got, err := f.reg.Digest(t.Context(), f.ns+"/"+l.Name+":"+tag)
			if err != nil {
				t.Fatalf("%s:%s: %v", l.Name, tag, err)
			}
			if got != want[l.Name] {
				t.Errorf("%s:%s → %s, want %s", l.Name, tag, got, want[l.Name])
			}
		}
	}
	// race builds two families (commits ca and cb) and promotes them at once with tags ta and tb.
	race := func(ca, cb, ta, tb string) (f *fixture, a, b map[string]string, ea, eb error) {
		f = newFixture(t, jitter(4*time.Millisecond))
		a, b = f.buildAt(t, ca, "run-a"), f.buildAt(t, cb, "run-b")
		cfgA, cfgB := f.cfg(ta), f.cfg(tb)
		cfgA.Commit, cfgB.Commit = ca, cb
		var wg sync.WaitGroup
		wg.Add(2)
		for _, x := range []struct {
			cfg Config
			err *error
		}{{cfgA, &ea}, {cfgB, &eb}} {
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(rand.Int64N(int64(30 * time.Millisecond))))
				_, *x.err = New(f.reg, f.ver, WithSigner(f.signer), WithSettle(20*time.Millisecond)).Promote(t.Context(), x.cfg)
			}()
		}
		wg.Wait()
		return f, a, b, ea, eb
	}
	t.Run("two versions: the newer wins", func(t *testing.T) {
		for i := 0; i < rounds; i++ {
			f, a, b, ea, eb := race("aaaa0123456789abcdef0123456789abcdef0123", "bbbb0123456789abcdef0123456789abcdef0123", "v20.3.1", "v20.3.2")
			if ea != nil || eb != nil {
				t.Fatalf("round %d: %v / %v", i, ea, eb)
			}
			check(t, f, "20.3.1-"+profile, a)
			check(t, f, "20.3.2-"+profile, b)
			check(t, f, "20.3-"+profile, b)
			check(t, f, profile, b)
		}
	})
	t.Run("one version from two commits: one whole release", func(t *testing.T) {
		for i := 0; i < rounds; i++ {
			f, a, b, ea, eb := race("cccc0123456789abcdef0123456789abcdef0123", "dddd0123456789abcdef0123456789abcdef0123", "v20.4.0", "v20.4.0")
			root, err := f.reg.Digest(t.Context(), f.ns+"/soe:20.4.0-"+profile)
			if err != nil {
				t.Fatal(err)
			}
			winner, winErr, loseErr := a, ea, eb
			if root == b["soe"] {
				winner, winErr, loseErr = b, eb, ea
			}
			check(t, f, "20.4.0-"+profile, winner)
			check(t, f, profile, winner)
			if winErr != nil {
				t.Errorf("round %d: the run whose release stands failed: %v", i, winErr)
			}
			var lost *LostRaceError
			if loseErr == nil || (!errors.As(loseErr, &lost) && !strings.Contains(loseErr.Error(), "already points at")) {
				t.Errorf("round %d: the other run did not say it lost: %v", i, loseErr)
			}
		}
	})
}

// TestRegistryDownIsNotARefusal: a registry failing while signatures are read is reported as unreachable (run it
// again), not as "no valid signature", and the report does not say REFUSED.
func TestRegistryDownIsNotARefusal(t *testing.T) {
	var down atomic.Bool
	f := newFixture(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() && (strings.Contains(r.URL.Path, ".sig") || strings.Contains(r.URL.Path, "/blobs/")) {
				http.Error(w, "injected outage", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	f.build(t)
	down.Store(true)
	rep, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(t.Context(), f.cfg("v1.0.0"))
	var re *RefusedError
	if err == nil || errors.As(err, &re) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("promotion with the registry down: %v", err)
	}
	if rep != nil && (rep.Refused != "" || !strings.Contains(rep.Text(), "INCOMPLETE")) {
		t.Errorf("report:\n%s", rep.Text())
	}
	down.Store(false)
	if rep, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(t.Context(), f.cfg("v1.0.0")); err != nil || !rep.Complete {
		t.Fatalf("the rerun once the registry is back: %v", err)
	}
}
