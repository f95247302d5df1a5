//go:build integration

package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagemode/imagemode/ci/flow"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/record"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/release"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/sbom/sbomtest"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/tags"
	"github.com/imagemode/imagemode/tests/faultproxy"
)

var family = []release.Layer{{Name: "soe"}, {Name: "httpd", Parent: "soe"}, {Name: "database", Parent: "soe"}, {Name: "homepage", Parent: "httpd"}}

// candidates pushes a complete candidate family (labels, candidate tags, signatures, passing verdicts) under ns and
// returns the digests by layer.
func candidates(t *testing.T, ns, commit, profile string, s *signing.KeySigner) map[string]string {
	t.Helper()
	ctx := t.Context()
	digests := map[string]string{}
	for _, l := range family {
		img, err := random.Image(64*1024, 3)
		if err != nil {
			t.Fatal(err)
		}
		// A dpkg database, for the SBOM promotion requires.
		pkgs, err := sbomtest.DpkgLayer(map[string]string{"base-files": "12.4+deb12u11", l.Name + "-pkg": "1.0-1"})
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, pkgs); err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		base := "sha256:" + strings.Repeat("b", 64)
		if l.Parent != "" {
			base = digests[l.Parent]
		}
		cfg.Config.Labels = map[string]string{layers.LabelRevision: commit, layers.LabelLayer: l.Name,
			layers.LabelProfile: profile, layers.LabelBaseDigest: base, layers.LabelParent: l.Parent}
		if img, err = mutate.ConfigFile(img, cfg); err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(ns + "/" + l.Name + ":" + tags.Candidate(commit, profile))
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests[l.Name] = d.String()
		dref := ns + "/" + l.Name + "@" + d.String()
		if err := s.Sign(ctx, dref); err != nil {
			t.Fatal(err)
		}
		// The SBOM and provenance ci attests on a built layer.
		rep := &report.Report{Version: report.Version, RunID: "it-" + commit[:8], Commit: commit, Registry: ns, Profile: profile,
			BaseImage: "registry.example/base:1", BaseDigest: "sha256:" + strings.Repeat("b", 64), Started: time.Now().UTC(),
			GraphFile: "containerfiles/layers.yaml", GraphDigest: "sha256:" + strings.Repeat("5", 64),
			Layers: []report.Layer{{Name: l.Name, Parent: l.Parent, Repository: ns + "/" + l.Name, Digest: d.String(), Ref: dref, ParentDigest: base,
				Status: report.StatusBuilt, BaseName: "registry.example/base:1", Containerfile: "containerfiles/" + l.Name + "/Containerfile",
				ContainerfileDigest: "sha256:" + strings.Repeat("6", 64)}}}
		ev := &flow.Evidencer{Images: registry.New(), Signer: s, BuilderID: "https://example.org/tests", ToolVersion: "test"}
		if _, err := ev.Attest(ctx, rep); err != nil {
			t.Fatal(err)
		}
	}
	// The ci run that tested them: a passing verdict per layer and the run record binding them.
	var vs []smoke.Verdict
	for _, l := range family {
		dref := ns + "/" + l.Name + "@" + digests[l.Name]
		vs = append(vs, smoke.Verdict{Verdict: smoke.Pass, Image: dref, Digest: digests[l.Name], Layer: l.Name, Commit: commit,
			RunID: "it-" + commit[:8], Mode: "ephemeral", Accel: "tcg", Started: time.Now().UTC()})
	}
	preds, err := smoke.Attest(ctx, s, vs, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := record.New(commit, profile, "it-"+commit[:8], vs, preds, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Attest(ctx, ns+"/soe@"+digests["soe"], record.PredicateType, data); err != nil {
		t.Fatal(err)
	}
	m, _, err := record.Anchor(commit, profile)
	if err != nil {
		t.Fatal(err)
	}
	anchor, err := registry.New().PutArtifact(ctx, ns+"/soe", m, record.ManifestMediaType, map[string][]byte{record.EmptyMediaType: record.EmptyBlob})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Attest(ctx, anchor, record.PredicateType, data); err != nil {
		t.Fatal(err)
	}
	return digests
}

// TestConcurrentPromotionsRealRegistry: two promotions at once against the real registry, again and again with
// random start delays. Two versions: the newer ends on the floating tags. One version from two commits: one whole
// release stands and the other run says it lost.
func TestConcurrentPromotionsRealRegistry(t *testing.T) {
	ctx := t.Context()
	const profile = "centos-stream-9"
	reg := registry.New()
	priv, pub, err := signing.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := signing.NewKeySigner(priv, []byte("pw"), reg)
	if err != nil {
		t.Fatal(err)
	}
	ver, err := signing.NewKeyVerifier(pub, reg)
	if err != nil {
		t.Fatal(err)
	}
	check := func(ns, tag string, want map[string]string) {
		t.Helper()
		for _, l := range family {
			got, err := reg.Digest(ctx, ns+"/"+l.Name+":"+tag)
			if err != nil || got != want[l.Name] {
				t.Errorf("%s:%s → %s (%v), want %s", l.Name, tag, got, err, want[l.Name])
			}
		}
	}
	both := func(a, b release.Config) (error, error) {
		var ea, eb error
		var wg sync.WaitGroup
		wg.Add(2)
		for _, x := range []struct {
			cfg release.Config
			err *error
		}{{a, &ea}, {b, &eb}} {
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(rand.Int64N(int64(40 * time.Millisecond))))
				_, *x.err = release.New(reg, ver, release.WithSigner(s), release.WithSettle(100*time.Millisecond)).Promote(ctx, x.cfg)
			}()
		}
		wg.Wait()
		return ea, eb
	}
	for round := 0; round < 3; round++ {
		ns := env.Namespace(t)
		ca, cb := fmt.Sprintf("a%039d", round), fmt.Sprintf("b%039d", round)
		a, b := candidates(t, ns, ca, profile, s), candidates(t, ns, cb, profile, s)
		ea, eb := both(release.Config{Tag: "v20.3.1", Commit: ca, Registry: ns, Profiles: []string{profile}, Layers: family},
			release.Config{Tag: "v20.3.2", Commit: cb, Registry: ns, Profiles: []string{profile}, Layers: family})
		if ea != nil || eb != nil {
			t.Fatalf("two versions, round %d: %v / %v", round, ea, eb)
		}
		check(ns, "20.3.1-"+profile, a)
		check(ns, "20.3-"+profile, b)
		check(ns, profile, b)

		ns = env.Namespace(t)
		a, b = candidates(t, ns, ca, profile, s), candidates(t, ns, cb, profile, s)
		ea, eb = both(release.Config{Tag: "v20.4.0", Commit: ca, Registry: ns, Profiles: []string{profile}, Layers: family},
			release.Config{Tag: "v20.4.0", Commit: cb, Registry: ns, Profiles: []string{profile}, Layers: family})
		root, err := reg.Digest(ctx, ns+"/soe:20.4.0-"+profile)
		if err != nil {
			t.Fatal(err)
		}
		winner, winErr, loseErr := a, ea, eb
		if root == b["soe"] {
			winner, winErr, loseErr = b, eb, ea
		}
		check(ns, "20.4.0-"+profile, winner)
		check(ns, profile, winner)
		var lost *release.LostRaceError
		if winErr != nil || loseErr == nil || (!errors.As(loseErr, &lost) && !strings.Contains(loseErr.Error(), "already points at")) {
			t.Errorf("one version, round %d: winner %v, other %v", round, winErr, loseErr)
		}
	}
}

// TestPromotionUnderInjectedFaults puts a seeded proxy that fails 25% of requests (500s and connection resets) in
// front of the real registry. Each promotion either completes through retries or stops with a report of exactly
// what moved; reruns converge to the fully promoted state; no release tag ever points at a digest that was not
// verified.
func TestPromotionUnderInjectedFaults(t *testing.T) {
	ctx := t.Context()
	const commit = "0ddba11c0ffee0123456789abcdef0123456789a"
	const profile = "centos-stream-9"
	stops := 0
	for _, tc := range []struct {
		seed  int64
		steps int
	}{{1, 5}, {2, 5}, {3, 3}, {4, 3}} {
		seed := tc.seed
		proxy := faultproxy.Start(env.Registry, 0, seed)
		defer proxy.Close()
		ns := proxy.Addr() + "/" + strings.TrimPrefix(env.Namespace(t), env.Registry+"/")
		clean := registry.New(registry.WithRetry(registry.Retry{Steps: 1}))
		priv, pub, err := signing.GenerateKeyPair([]byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		signer, err := signing.NewKeySigner(priv, []byte("pw"), clean)
		if err != nil {
			t.Fatal(err)
		}
		digests := candidates(t, ns, commit, profile, signer)
		verified := map[string]bool{}
		for _, d := range digests {
			verified[d] = true
		}

		proxy.SetRate(0.25)
		flaky := registry.New(registry.WithRetry(registry.Retry{Steps: tc.steps, Initial: 20 * time.Millisecond, Factor: 2,
			Statuses: registry.DefaultRetry.Statuses}))
		ver, err := signing.NewKeyVerifier(pub, flaky)
		if err != nil {
			t.Fatal(err)
		}
		flakySigner, err := signing.NewKeySigner(priv, []byte("pw"), flaky)
		if err != nil {
			t.Fatal(err)
		}
		cfg := release.Config{Tag: "v1.0.0", Commit: commit, Registry: ns, Profiles: []string{profile}, Layers: family}
		converged := false
		for run := 1; run <= 40 && !converged; run++ {
			rep, err := release.New(flaky, ver, release.WithSigner(flakySigner), release.WithSettle(50*time.Millisecond)).Promote(ctx, cfg)
			if err != nil {
				stops++
				t.Logf("seed %d (%d attempts per request) run %d stopped: %v", seed, tc.steps, run, err)
				if rep == nil {
					continue
				}
				for _, m := range rep.Moves {
					if m.Status == release.Moved && !verified[m.Digest] {
						t.Errorf("moved %s:%s to an unverified digest %s", m.Repository, m.Tag, m.Digest)
					}
				}
			} else {
				converged = rep.Complete
			}
			// Invariant, read without faults: every release tag points at a verified digest.
			proxy.SetRate(0)
			for _, l := range family {
				ts, err := clean.Tags(ctx, ns+"/"+l.Name)
				if err != nil {
					t.Fatal(err)
				}
				for _, tg := range ts {
					if strings.HasPrefix(tg, "sha") {
						continue
					}
					d, err := clean.Digest(ctx, ns+"/"+l.Name+":"+tg)
					if err != nil {
						t.Fatal(err)
					}
					if d != digests[l.Name] {
						t.Errorf("seed %d run %d: %s:%s points at %s, not the verified %s", seed, run, l.Name, tg, d, digests[l.Name])
					}
				}
			}
			proxy.SetRate(0.25)
		}
		total, failed, resets := proxy.Stats()
		t.Logf("seed %d: %d requests, %d failed (%d resets)", seed, total, failed, resets)
		if !converged {
			t.Fatalf("seed %d: promotion did not converge in 40 runs", seed)
		}
		if float64(failed) < 0.15*float64(total) {
			t.Errorf("seed %d: only %d of %d requests failed; the test must inject about 25%%", seed, failed, total)
		}
		proxy.SetRate(0)
		for _, l := range family {
			for _, tg := range []string{"1.0.0-" + profile, "1.0-" + profile, profile} {
				d, err := clean.Digest(ctx, ns+"/"+l.Name+":"+tg)
				if err != nil || d != digests[l.Name] {
					t.Errorf("seed %d: %s:%s -> %s (%v)", seed, l.Name, tg, d, err)
				}
			}
		}
	}
	if stops == 0 {
		t.Error("no promotion was interrupted: the resume path was not exercised")
	}
}

// TestTrustAttacksRealRegistry runs the release attack tests of ci/release — forged exact tags, floating tags moved
// backwards, a reused digest's later failure, an older build of the commit, and the verdict-freshness attacks —
// against the real registry (docker-registry), each in a namespace of its own, reading the registry afterwards.
func TestTrustAttacksRealRegistry(t *testing.T) {
	cmd := exec.CommandContext(t.Context(), "go", "test", "-count=1", "-v", "-run",
		"TestForgedExactTagsAreIgnoredAndReported|TestFloatingTagsNeverMoveBackwards|TestReusedDigestFailureBlocks|TestOlderBuildOfTheCommitRefused|TestVerdictFreshnessAttacks|"+
			"TestPromotionRequiresSBOMAndProvenance|TestPromotionShowsPackageChangesAndDryRunMovesNothing",
		"./ci/release/")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "IMAGEMODE_RELEASE_TEST_REGISTRY="+env.Registry) // ci/release RealRegistryEnv
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the attack tests against %s: %v\n%s", env.Registry, err, out)
	}
	if n := strings.Count(string(out), "--- PASS"); n < 18 {
		t.Errorf("only %d tests passed against the real registry:\n%s", n, out)
	}
}
