package release

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagemode/imagemode/ci/internal/keytest"
	"github.com/imagemode/imagemode/ci/internal/regtest"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/record"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/tags"
)

const (
	commit  = "c0ffee0123456789abcdef0123456789abcdef01"
	profile = "centos-stream-9"
)

// RealRegistryEnv names a registry host:port the attack tests use instead of an in-process one.
const RealRegistryEnv = "IMAGEMODE_RELEASE_TEST_REGISTRY"

// baseDigest is the base image digest the fixture's families are built on.
var baseDigest = "sha256:" + strings.Repeat("b", 64)

var family = []Layer{{Name: "soe"}, {Name: "httpd", Parent: "soe"}, {Name: "database", Parent: "soe"}, {Name: "homepage", Parent: "httpd"}}

// counter counts blob uploads and manifest writes on the registry.
type counter struct {
	h          http.Handler
	blobBytes  atomic.Int64
	blobWrites atomic.Int64
	manifests  atomic.Int64
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, "/blobs/uploads") && r.Method != http.MethodGet && r.Method != http.MethodHead {
		if r.URL.Query().Get("mount") == "" {
			c.blobWrites.Add(1)
		}
		if r.ContentLength > 0 {
			c.blobBytes.Add(r.ContentLength)
		}
	}
	if strings.Contains(r.URL.Path, "/manifests/") && r.Method == http.MethodPut {
		c.manifests.Add(1)
	}
	c.h.ServeHTTP(w, r)
}

type fixture struct {
	host   string
	ns     string
	reg    *registry.Client
	signer *signing.KeySigner
	other  *signing.KeySigner
	ver    *signing.KeyVerifier
	cnt    *counter
	// digests of the candidates, by layer
	digests map[string]string
	// packages are what the dpkg database of each layer's next image lists (default: base-files and <layer>-pkg).
	packages map[string]map[string]string
}

func newFixture(t testing.TB, wrap ...func(http.Handler) http.Handler) *fixture {
	t.Helper()
	cnt := &counter{h: regtest.Handler()}
	var h http.Handler = cnt
	for _, w := range wrap {
		h = w(h)
	}
	reg := registry.New(registry.WithRetry(registry.Retry{Steps: 1}))
	s, v, _ := keytest.Pair(t, reg, "pw")
	o, _, _ := keytest.Pair(t, reg, "o")
	// tests/promote_test.go runs the attack tests against a real registry (docker-registry) with this variable;
	// each fixture gets a namespace of its own there. Counters then count nothing.
	if real := os.Getenv(RealRegistryEnv); real != "" {
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s %d", t.Name(), time.Now().UnixNano())))
		ns := fmt.Sprintf("%s/release-%x", real, sum[:6])
		return &fixture{host: real, ns: ns, reg: reg, signer: s, other: o, ver: v, cnt: cnt, digests: map[string]string{}}
	}
	host := regtest.Start(t, h)
	return &fixture{host: host, ns: host + "/im", reg: reg, signer: s, other: o, ver: v, cnt: cnt, digests: map[string]string{}}
}

// image pushes a random image with the pipeline's labels to repo:tag and returns its digest reference.
func (f *fixture) image(t testing.TB, layer, parent, baseDigest, rev, tag string) string {
	t.Helper()
	labels := map[string]string{
		layers.LabelRevision: rev, layers.LabelLayer: layer, layers.LabelProfile: profile,
		layers.LabelBaseDigest: baseDigest,
	}
	if parent != "" {
		labels[layers.LabelParent] = parent
	}
	repo := f.ns + "/" + layer
	pkgs := f.packages[layer]
	if pkgs == nil {
		pkgs = map[string]string{"base-files": "12.4+deb12u11", layer + "-pkg": "1.0-1"}
	}
	d, err := regtest.PushPackages(t.Context(), repo+":"+tag, labels, pkgs)
	if err != nil {
		t.Fatal(err)
	}
	return repo + "@" + d
}

func verdict(ref, v string) []byte {
	_, d, _ := strings.Cut(ref, "@")
	b, _ := json.Marshal(smoke.Verdict{Verdict: v, Image: ref, Digest: d, Layer: layerOf(ref), Mode: "ephemeral", Accel: "tcg",
		Reason: map[bool]string{true: "", false: "httpd did not answer"}[v == smoke.Pass], Started: time.Now().UTC()})
	return b
}

// layerOf is the last element of an image's repository.
func layerOf(ref string) string {
	repo, _, _ := strings.Cut(ref, "@")
	return repo[strings.LastIndex(repo, "/")+1:]
}

// build makes a complete, valid candidate family: labels, candidate tags, signatures, and a passing run (run1)
// with its record.
func (f *fixture) build(t testing.TB) { f.buildAt(t, commit, "run1") }

// fast makes the race-handling pauses of a promotion short (an in-process registry answers at once).
var fast = WithSettle(5 * time.Millisecond)

// run is a ci run of commit: every layer's verdict (pass unless outcome says otherwise), attested with the
// commit and run id, and the run record binding them, attested on the root.
func (f *fixture) run(t testing.TB, commit, runID string, outcome map[string]string) {
	t.Helper()
	ctx := t.Context()
	var vs []smoke.Verdict
	for _, l := range family {
		ref := f.ref(l.Name)
		_, d, _ := strings.Cut(ref, "@")
		v := smoke.Verdict{Verdict: smoke.Pass, Image: ref, Digest: d, Layer: l.Name, Commit: commit, RunID: runID,
			Mode: "ephemeral", Accel: "tcg", Started: time.Now().UTC()}
		if o := outcome[l.Name]; o != "" {
			v.Verdict, v.Reason = o, l.Name+" did not answer"
		}
		vs = append(vs, v)
	}
	preds, err := smoke.Attest(ctx, f.signer, vs, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := record.New(commit, profile, runID, vs, preds, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.signer.Attest(ctx, f.ref("soe"), record.PredicateType, data); err != nil {
		t.Fatal(err)
	}
	if err := f.signer.Attest(ctx, f.anchor(t, commit), record.PredicateType, data); err != nil {
		t.Fatal(err)
	}
}

// anchor writes the run anchor of commit c and returns its digest reference.
func (f *fixture) anchor(t testing.TB, c string) string {
	t.Helper()
	m, _, err := record.Anchor(c, profile)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := f.reg.PutArtifact(t.Context(), f.ns+"/soe", m, record.ManifestMediaType, map[string][]byte{record.EmptyMediaType: record.EmptyBlob})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func (f *fixture) ref(layer string) string { return f.ns + "/" + layer + "@" + f.digests[layer] }

func (f *fixture) cfg(tag string) Config {
	return Config{Tag: tag, Commit: commit, Registry: f.ns, Profiles: []string{profile}, Layers: family}
}

func (f *fixture) releaseTags(t testing.TB) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, l := range family {
		ts, err := f.reg.Tags(t.Context(), f.ns+"/"+l.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range ts {
			if !strings.HasPrefix(tg, "sha") && !strings.HasPrefix(tg, "build-") {
				out[l.Name] = append(out[l.Name], tg)
			}
		}
	}
	return out
}

func TestPromoteMovesTagsAndConverges(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	f.build(t)
	// What one attestation uploads (the release record is one): measured on an image of its own.
	other := f.image(t, "other", "", "sha256:"+strings.Repeat("b", 64), commit, "x")
	blobs := f.cnt.blobWrites.Load()
	if err := f.signer.Attest(ctx, other, record.ReleasePredicateType, []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	perAttest := f.cnt.blobWrites.Load() - blobs
	blobs = f.cnt.blobWrites.Load()
	rep, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(ctx, f.cfg("v1.4.2"))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Complete || len(rep.Verified) != 4 || len(rep.Moves) != 12 {
		t.Fatalf("report: complete=%v verified=%d moves=%d", rep.Complete, len(rep.Verified), len(rep.Moves))
	}
	for _, m := range rep.Moves {
		if m.Status != Moved {
			t.Errorf("%s:%s %s", m.Repository, m.Tag, m.Status)
		}
	}
	if n := f.cnt.blobWrites.Load() - blobs; n > perAttest {
		t.Errorf("promotion inside one repository uploaded %d blobs; its release record needs %d", n, perAttest)
	}
	for _, l := range family {
		for _, tg := range []string{"1.4.2-" + profile, "1.4-" + profile, profile} {
			d, err := f.reg.Digest(ctx, f.ns+"/"+l.Name+":"+tg)
			if err != nil || d != f.digests[l.Name] {
				t.Errorf("%s:%s -> %s (%v), want %s", l.Name, tg, d, err, f.digests[l.Name])
			}
		}
	}
	// Order: every exact tag before any X.Y tag before any channel tag; root first.
	if rep.Moves[0].Tag != "1.4.2-"+profile || !strings.HasSuffix(rep.Moves[0].Repository, "/soe") || rep.Moves[11].Tag != profile {
		t.Errorf("move order: first %v last %v", rep.Moves[0], rep.Moves[11])
	}
	again, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(ctx, f.cfg("v1.4.2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range again.Moves {
		if m.Status != Unchanged {
			t.Errorf("rerun: %s:%s %s, want unchanged", m.Repository, m.Tag, m.Status)
		}
	}
	if !strings.Contains(again.Text(), "promotion complete") {
		t.Errorf("text:\n%s", again.Text())
	}
}

func TestPrereleaseAndOlderRelease(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	f.build(t)
	rep, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(ctx, f.cfg("v2.0.0-rc.1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Moves) != 4 || rep.Moves[0].Tag != "2.0.0-rc.1-"+profile {
		t.Errorf("pre-release moves: %+v", rep.Moves)
	}
	if _, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(ctx, f.cfg("v1.5.0")); err != nil {
		t.Fatal(err)
	}
	// An older stable release afterwards gets its exact and X.Y tags, but the channel stays on 1.5.0.
	rep, err = New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(ctx, f.cfg("v1.4.9"))
	if err != nil {
		t.Fatal(err)
	}
	var kept, moved int
	for _, m := range rep.Moves {
		switch {
		case m.Tag == profile && m.Status == Kept && strings.Contains(m.Note, "1.5.0"):
			kept++
		case m.Tag != profile && m.Status == Unchanged:
			moved++ // same digests as 1.5.0 in this fixture: exact and X.Y tags are written or unchanged
		case m.Tag != profile && m.Status == Moved:
			moved++
		}
	}
	if kept != 4 || moved != 8 {
		t.Errorf("older release: kept=%d moved=%d\n%s", kept, moved, rep.Text())
	}
}

// TestHostileCases: each promotion must be refused with a clear error, and no release tag may move.
// hostile is a promotion that must be refused: setup breaks the fixture's family, want is in the error.
type hostile struct {
	name  string
	setup func(t *testing.T, f *fixture) Config
	want  string
}

func TestHostileCases(t *testing.T) {
	cases := []hostile{
		{"unsigned", func(t *testing.T, f *fixture) Config {
			ref := f.image(t, "httpd", "soe", f.digests["soe"], commit, tags.Candidate(commit, profile))
			f.attest(t, ref, smoke.Pass)
			return f.cfg("v1.0.0")
		}, "signature"},
		{"signed by another key", func(t *testing.T, f *fixture) Config {
			ref := f.image(t, "httpd", "soe", f.digests["soe"], commit, tags.Candidate(commit, profile))
			if err := f.other.Sign(t.Context(), ref); err != nil {
				t.Fatal(err)
			}
			f.attest(t, ref, smoke.Pass)
			return f.cfg("v1.0.0")
		}, "signature"},
		{"signature for a different digest", func(t *testing.T, f *fixture) Config {
			ref := f.image(t, "httpd", "soe", f.digests["soe"], commit, tags.Candidate(commit, profile))
			f.attest(t, ref, smoke.Pass)
			// Put the database's valid signature under the new image's .sig tag.
			_, d, _ := strings.Cut(ref, "@")
			copyManifest(t, f, f.ns+"/database:"+registry.AttachmentTag(f.digests["database"], "sig"), f.ns+"/httpd:"+registry.AttachmentTag(d, "sig"))
			return f.cfg("v1.0.0")
		}, "signature"},
		{"candidate tag moved after signing", func(t *testing.T, f *fixture) Config {
			f.image(t, "homepage", "httpd", f.digests["httpd"], commit, tags.Candidate(commit, profile))
			return f.cfg("v1.0.0")
		}, "signature"},
		{"revision label not the tag's commit", func(t *testing.T, f *fixture) Config {
			ref := f.image(t, "database", "soe", f.digests["soe"], strings.Repeat("9", 40), tags.Candidate(commit, profile))
			f.signAttest(t, ref, smoke.Pass)
			return f.cfg("v1.0.0")
		}, "revision label is \"9999"},
		{"missing attestation", func(t *testing.T, f *fixture) Config {
			ref := f.image(t, "database", "soe", f.digests["soe"], commit, tags.Candidate(commit, profile))
			if err := f.signer.Sign(t.Context(), ref); err != nil {
				t.Fatal(err)
			}
			return f.cfg("v1.0.0")
		}, "no passing smoke test"},
		{"failed attestation", func(t *testing.T, f *fixture) Config {
			f.attest(t, f.ref("homepage"), smoke.Fail)
			return f.cfg("v1.0.0")
		}, "the smoke test failed (httpd did not answer)"},
		{"attestation for another digest", func(t *testing.T, f *fixture) Config {
			ref := f.image(t, "database", "soe", f.digests["soe"], commit, tags.Candidate(commit, profile))
			if err := f.signer.Sign(t.Context(), ref); err != nil {
				t.Fatal(err)
			}
			// A signed verdict made for another image, attached to this one.
			_, d, _ := strings.Cut(ref, "@")
			copyManifest(t, f, f.ns+"/httpd:"+registry.AttachmentTag(f.digests["httpd"], "att"), f.ns+"/database:"+registry.AttachmentTag(d, "att"))
			return f.cfg("v1.0.0")
		}, "no passing smoke test"},
		{"verdict naming another digest", func(t *testing.T, f *fixture) Config {
			// A signed verdict whose subject is this image but whose body names the SOE: it proves nothing here.
			ref := f.image(t, "database", "soe", f.digests["soe"], commit, tags.Candidate(commit, profile))
			if err := f.signer.Sign(t.Context(), ref); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(smoke.Verdict{Verdict: smoke.Pass, Digest: f.digests["soe"], Layer: "soe", Mode: "ephemeral", Started: time.Now().UTC()})
			if err := f.signer.Attest(t.Context(), ref, signing.PredicateSmoke, b); err != nil {
				t.Fatal(err)
			}
			return f.cfg("v1.0.0")
		}, "a verdict for " + "sha256:"},
		{"attestation signed by another key", func(t *testing.T, f *fixture) Config {
			ref := f.image(t, "database", "soe", f.digests["soe"], commit, tags.Candidate(commit, profile))
			if err := f.signer.Sign(t.Context(), ref); err != nil {
				t.Fatal(err)
			}
			if err := f.other.Attest(t.Context(), ref, signing.PredicateSmoke, verdict(ref, smoke.Pass)); err != nil {
				t.Fatal(err)
			}
			return f.cfg("v1.0.0")
		}, "no passing smoke test"},
		{"broken chain", func(t *testing.T, f *fixture) Config {
			other := f.image(t, "soe", "", "sha256:"+strings.Repeat("b", 64), commit, "other-soe")
			_, od, _ := strings.Cut(other, "@")
			ref := f.image(t, "homepage", "httpd", od, commit, tags.Candidate(commit, profile))
			f.signAttest(t, ref, smoke.Pass)
			return f.cfg("v1.0.0")
		}, "broken chain: built on sha256:"},
		{"profile label crosses profiles", func(t *testing.T, f *fixture) Config {
			c := f.cfg("v1.0.0")
			c.Profiles = []string{"centos-stream-10"}
			for _, l := range family {
				if err := f.reg.Tag(t.Context(), f.ref(l.Name), tags.Candidate(commit, "centos-stream-10")); err != nil {
					t.Fatal(err)
				}
			}
			return c
		}, `profile label is "centos-stream-9", not "centos-stream-10"`},
		{"invalid semver tag", func(t *testing.T, f *fixture) Config { return f.cfg("release-1") }, `git tag "release-1" is not a release version`},
		{"semver with leading zero", func(t *testing.T, f *fixture) Config { return f.cfg("v1.02.0") }, "is not a release version"},
		{"no candidate for the commit", func(t *testing.T, f *fixture) Config {
			c := f.cfg("v1.0.0")
			c.Commit = strings.Repeat("a", 40)
			return c
		}, "no candidate for commit aaaaaaaaaaaa"},
		{"registry unreachable", func(t *testing.T, f *fixture) Config {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			c := f.cfg("v1.0.0")
			c.Registry = addr + "/im"
			return c
		}, "connection refused"},
		{"existing release tag points elsewhere", func(t *testing.T, f *fixture) Config {
			f.image(t, "httpd", "soe", f.digests["soe"], commit, "1.0.0-"+profile)
			return f.cfg("v1.0.0")
		}, "already points at"},
	}
	checkRefused(t, cases)
}

// TestPromotionRequiresSBOMAndProvenance: a replacement httpd candidate, signed and passing, whose SBOM or
// provenance is missing or wrong, is refused and nothing moves. tests/promote_test.go runs it against
// docker-registry too.
func TestPromotionRequiresSBOMAndProvenance(t *testing.T) {
	checkRefused(t, []hostile{
		{"no SBOM", func(t *testing.T, f *fixture) Config {
			ref := f.replacement(t, "httpd", "soe")
			f.attestProvenance(t, f.signer, ref, family[1], commit, f.digests["soe"], baseDigest)
			return f.cfg("v1.0.0")
		}, "no SBOM signed by the key"},
		{"no provenance", func(t *testing.T, f *fixture) Config {
			ref := f.replacement(t, "httpd", "soe")
			f.attestSBOM(t, f.signer, ref)
			return f.cfg("v1.0.0")
		}, "no provenance signed by the key"},
		{"provenance signed by another key", func(t *testing.T, f *fixture) Config {
			ref := f.replacement(t, "httpd", "soe")
			f.attestSBOM(t, f.signer, ref)
			f.attestProvenance(t, f.other, ref, family[1], commit, f.digests["soe"], baseDigest)
			return f.cfg("v1.0.0")
		}, "no provenance signed by the key"},
		{"provenance of another commit", func(t *testing.T, f *fixture) Config {
			ref := f.replacement(t, "httpd", "soe")
			f.evidence(t, f.signer, ref, family[1], strings.Repeat("9", 40), f.digests["soe"], baseDigest)
			return f.cfg("v1.0.0")
		}, "its provenance names commit " + strings.Repeat("9", 40) + ", not " + commit},
		{"provenance with a wrong parent digest", func(t *testing.T, f *fixture) Config {
			ref := f.replacement(t, "httpd", "soe")
			f.evidence(t, f.signer, ref, family[1], commit, "sha256:"+strings.Repeat("7", 64), baseDigest)
			return f.cfg("v1.0.0")
		}, "its provenance names parent sha256:" + strings.Repeat("7", 64) + ", but the parent being promoted is sha256:"},
		{"provenance with a wrong base digest", func(t *testing.T, f *fixture) Config {
			ref := f.replacement(t, "homepage", "httpd")
			f.evidence(t, f.signer, ref, family[3], commit, f.digests["httpd"], "sha256:"+strings.Repeat("8", 64))
			return f.cfg("v1.0.0")
		}, "its provenance names base sha256:" + strings.Repeat("8", 64) + ", but the chain was built on " + baseDigest},
	})
}

// replacement pushes another candidate of layer (on the current parent) at the fixture's commit, signed and with
// a passing verdict, and returns its digest reference: everything promotion checks before SBOM and provenance.
func (f *fixture) replacement(t *testing.T, layer, parent string) string {
	t.Helper()
	ref := f.image(t, layer, parent, f.digests[parent], commit, tags.Candidate(commit, profile))
	f.signAttest(t, ref, smoke.Pass)
	return ref
}

// checkRefused runs each case on a fresh fixture: the promotion must be refused with the case's message, say so,
// and leave every release tag as it was.
func checkRefused(t *testing.T, cases []hostile) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.build(t)
			cfg := tc.setup(t, f)
			before := f.releaseTags(t)
			rep, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(t.Context(), cfg)
			if err == nil {
				t.Fatalf("promotion was not refused; report:\n%s", rep.Text())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not say %q:\n%v", tc.want, err)
			}
			var re *RefusedError
			if errors.As(err, &re) && !strings.Contains(err.Error(), "no tag was moved") {
				t.Errorf("a refusal must say nothing moved: %v", err)
			}
			after := f.releaseTags(t)
			if len(after) != len(before) {
				t.Errorf("release tags changed: before %v after %v", before, after)
			}
			for k, v := range after {
				if strings.Join(v, ",") != strings.Join(before[k], ",") {
					t.Errorf("%s release tags changed: %v -> %v", k, before[k], v)
				}
			}
			if rep != nil && rep.Complete {
				t.Errorf("report says complete")
			}
		})
	}
}

func TestForceMovesAnExistingReleaseTag(t *testing.T) {
	f := newFixture(t)
	f.build(t)
	f.image(t, "httpd", "soe", f.digests["soe"], commit, "1.0.0-"+profile)
	c := f.cfg("v1.0.0")
	c.Force = true
	if _, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	d, err := f.reg.Digest(t.Context(), f.ns+"/httpd:1.0.0-"+profile)
	if err != nil || d != f.digests["httpd"] {
		t.Errorf("forced tag -> %s (%v)", d, err)
	}
}

func TestReleaseRegistryCopiesAndResigns(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	f.build(t)
	c := f.cfg("v3.1.0")
	c.ReleaseRegistry = f.host + "/releases"
	if _, err := New(f.reg, f.ver, fast).Promote(ctx, c); err == nil || !strings.Contains(err.Error(), "needs the signing key") {
		t.Fatalf("copy without a signer: %v", err)
	}
	rep, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range family {
		dst := f.host + "/releases/" + l.Name + "@" + f.digests[l.Name]
		if err := f.ver.Verify(ctx, dst); err != nil {
			t.Errorf("release copy of %s does not verify: %v", l.Name, err)
		}
		d, err := f.reg.Digest(ctx, f.host+"/releases/"+l.Name+":3.1-"+profile)
		if err != nil || d != f.digests[l.Name] {
			t.Errorf("release tag of %s -> %s (%v)", l.Name, d, err)
		}
		if _, err := f.ver.Attestations(ctx, dst, signing.PredicateSmoke); err != nil {
			t.Errorf("attestation of %s not copied: %v", l.Name, err)
		}
	}
	if !rep.Complete {
		t.Error("incomplete")
	}
}

func (f *fixture) attest(t *testing.T, ref, v string) {
	t.Helper()
	if err := f.signer.Attest(t.Context(), ref, signing.PredicateSmoke, verdict(ref, v)); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) signAttest(t *testing.T, ref, v string) {
	t.Helper()
	if err := f.signer.Sign(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	f.attest(t, ref, v)
}

func copyManifest(t *testing.T, f *fixture, src, dst string) {
	t.Helper()
	ctx := t.Context()
	s, err := name.ParseReference(src)
	if err != nil {
		t.Fatal(err)
	}
	d, err := name.ParseReference(dst)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(s, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(d, img, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPromote4Images promotes a 4-layer family to a new version each iteration and reports the blob bytes
// uploaded (goal: 0 — promotion inside one repository writes manifests only) and the time per image.
func BenchmarkPromote4Images(b *testing.B) {
	f := newFixture(b)
	f.build(b)
	p := New(f.reg, f.ver, fast, WithSigner(f.signer))
	bytes0, writes0 := f.cnt.blobBytes.Load(), f.cnt.blobWrites.Load()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		rep, err := p.Promote(b.Context(), f.cfg(fmt.Sprintf("v1.0.%d", i)))
		if err != nil || !rep.Complete {
			b.Fatalf("promotion %d: %v", i, err)
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(f.cnt.blobBytes.Load()-bytes0)/n, "blob-bytes/op")
	b.ReportMetric(float64(f.cnt.blobWrites.Load()-writes0)/n, "blob-uploads/op")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/n/4, "ms/image")
}

// A layer reused unchanged keeps the revision label of the commit it was built at; a signed passing verdict naming
// the tag's commit makes it that commit's candidate.
func TestPromoteReusedLayer(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	f.build(t)
	const newCommit = "d00d0123456789abcdef0123456789abcdef0123"
	for _, l := range family {
		if err := f.reg.Tag(ctx, f.ref(l.Name), tags.Candidate(newCommit, profile)); err != nil {
			t.Fatal(err)
		}
	}
	c := f.cfg("v2.0.0")
	c.Commit = newCommit
	if _, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(ctx, c); err == nil || !strings.Contains(err.Error(), "no signed passing verdict names that commit") {
		t.Fatalf("reused layers without a verdict for the new commit: %v", err)
	}
	f.run(t, newCommit, "run2", nil)
	// A third commit reuses them too: its verdicts join the history, and the second commit stays promotable.
	const thirdCommit = "e00e0123456789abcdef0123456789abcdef0123"
	f.run(t, thirdCommit, "run3", nil)
	rep, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(ctx, c)
	if err != nil || !rep.Complete {
		t.Fatalf("reused layers with verdicts for the new commit (and a later one): %v", err)
	}
}

// The verdict history: a run that fails after a pass blocks promotion; a newer passing run clears it.
func TestPromoteVerdictHistory(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	f.build(t)
	f.run(t, commit, "run2", map[string]string{"database": smoke.Fail})
	_, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(ctx, f.cfg("v1.0.0"))
	if err == nil || !strings.Contains(err.Error(), "after its last pass") || !strings.Contains(err.Error(), "database did not answer") {
		t.Fatalf("a failure after the last pass: %v", err)
	}
	f.run(t, commit, "run3", nil)
	if rep, err := New(f.reg, f.ver, fast, WithSigner(f.signer)).Promote(ctx, f.cfg("v1.0.0")); err != nil || !rep.Complete {
		t.Fatalf("a pass after the failure: %v", err)
	}
}
