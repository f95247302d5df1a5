// Package release promotes the candidates of one commit to release tags — retagged, never rebuilt. Every layer of
// every profile is verified first (candidate present, revision label, signature, a passing smoke-test attestation
// for that exact digest, the chain to its parent); only when all pass are tags moved, in a fixed order, each move
// idempotent, so that a failed promotion can be run again and converges.
package release

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/imagemode/imagemode/ci/layers"
	imgprofile "github.com/imagemode/imagemode/ci/profile"
	"github.com/imagemode/imagemode/ci/provenance"
	"github.com/imagemode/imagemode/ci/record"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/sbom"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/tags"
)

// Layer is one layer to promote, in build order (parents first).
type Layer struct {
	Name   string
	Parent string
}

// LayersOf lists a graph's layers in build order (parents first).
func LayersOf(g *layers.Graph) []Layer {
	var out []Layer
	for _, lv := range g.Levels() {
		for _, n := range lv {
			if l, ok := g.Layer(n); ok {
				out = append(out, Layer{Name: l.Name, Parent: l.Parent})
			}
		}
	}
	return out
}

// Config is one promotion.
type Config struct {
	// Tag is the git tag, vX.Y.Z[-pre].
	Tag string
	// Commit is the commit the tag points to (full id).
	Commit string
	// Registry is the candidates' repository prefix (<Registry>/<layer>).
	Registry string
	// ReleaseRegistry, when set and different from Registry, receives copies of the promoted digests, signed
	// again there (a copied signature names the candidate repository, which matchRepository refuses).
	ReleaseRegistry string
	Profiles        []string
	Layers          []Layer
	// Force allows moving an X.Y.Z tag that already points at another digest.
	Force bool
	// ExpectRun is the id of the run whose signed run record must be promoted (release.yml: the newest CI run of the
	// commit, as GitHub lists it). Empty: the newest record on the commit's run anchor.
	ExpectRun string
	// RollbackTo (X.Y.Z, the version of Tag) lets the floating tags move to this release although they point at a
	// higher one: a deliberate rollback.
	RollbackTo string
	// DryRun verifies everything and computes the package changes, then stops: no tag moves, nothing is copied
	// or signed (the key is not needed).
	DryRun bool
}

// Move statuses.
const (
	Moved     = "moved"
	Unchanged = "unchanged"
	Kept      = "kept"
	Pending   = "pending"
	Failed    = "failed"
)

// Move is one tag written (or not) by a promotion.
type Move struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
	Status     string `json:"status"`
	Note       string `json:"note,omitempty"`
}

// Checked is one verified layer of one profile.
type Checked struct {
	Profile   string `json:"profile"`
	Layer     string `json:"layer"`
	Candidate string `json:"candidate"`
	Digest    string `json:"digest"`
	Release   string `json:"release"`
	// verdicts are the image's signed smoke verdicts, with the digests of their predicates; newestPass the time
	// of the newest passing one.
	verdicts   []seenVerdict
	newestPass time.Time
	// chainBase is the base image digest of the chain's root; packages what the layer's signed SBOM lists.
	chainBase string
	packages  []sbom.Package
}

type seenVerdict struct {
	smoke.Verdict
	predicate string
}

// Report says what a promotion verified and which tags it moved.
type Report struct {
	Tag      string    `json:"tag"`
	Version  string    `json:"version"`
	Commit   string    `json:"commit"`
	Verified []Checked `json:"verified"`
	Moves    []Move    `json:"moves"`
	Complete bool      `json:"complete"`
	// Ignored lists exact release tags the floating tags did not follow: no signed release record describes them.
	Ignored []string `json:"ignored,omitempty"`
	// Releases are the release records of this promotion, one per profile, and the image each is attested on
	// (release.yml attests them a second time keylessly from here).
	Releases []SignedRelease `json:"releaseRecords,omitempty"`
	// Changes is what the promotion changes on the hosts following each floating tag (package differences).
	Changes []LayerChanges `json:"changes,omitempty"`
	// DryRun says nothing was moved: the promotion was only verified.
	DryRun bool `json:"dryRun,omitempty"`
	// Refused says why nothing was promoted when a check refused it: a rerun alone will not help.
	Refused string `json:"refused,omitempty"`
}

// SignedRelease is a release record and the image (the release's root layer by digest) it is attested on.
type SignedRelease struct {
	Image  string         `json:"image"`
	Record record.Release `json:"record"`
}

// JSON encodes the report.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the promotion report: %w", err)
	}
	return append(b, '\n'), nil
}

// Text renders the moves for people.
func (r *Report) Text() string {
	var b strings.Builder
	if r.Refused != "" {
		fmt.Fprintf(&b, "promotion %s (commit %s): refused after %d image(s) verified\n", r.Tag, short(r.Commit), len(r.Verified))
	} else {
		fmt.Fprintf(&b, "promotion %s (commit %s): %d image(s) verified\n", r.Tag, short(r.Commit), len(r.Verified))
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tTAG\tDIGEST\tNOTE")
	for _, m := range r.Moves {
		fmt.Fprintf(tw, "%s\t%s:%s\t%s\t%s\n", m.Status, m.Repository, m.Tag, short(m.Digest), m.Note)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(&b, "(table: %v)\n", err)
	}
	if len(r.Changes) > 0 {
		b.WriteString("package changes on the hosts:\n")
		b.WriteString(ChangesText(r.Changes))
	}
	switch {
	case r.DryRun:
		b.WriteString("dry run: everything verifies; nothing was moved\n")
	case r.Complete:
		b.WriteString("promotion complete\n")
	case r.Refused != "":
		fmt.Fprintf(&b, "promotion REFUSED: %s\n", r.Refused)
	default:
		b.WriteString("promotion INCOMPLETE: run it again to finish (moves are idempotent)\n")
	}
	return b.String()
}

func short(s string) string {
	if i := strings.Index(s, ":"); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// Promoter runs promotions.
type Promoter struct {
	reg      *registry.Client
	verifier signing.Verifier
	signer   signing.Signer
	log      io.Writer
	settle   time.Duration
}

// WithSettle sets how long a promotion waits before it reads back what it wrote (default 1 s): another
// promotion's writes in flight land in that time, so a lost race or a mixed release is seen and repaired.
func WithSettle(d time.Duration) Option { return func(p *Promoter) { p.settle = d } }

// Option configures a Promoter.
type Option func(*Promoter)

// WithSigner is required to copy releases to a separate release registry (they are signed again there).
func WithSigner(s signing.Signer) Option { return func(p *Promoter) { p.signer = s } }

// WithLog sends progress lines to w.
func WithLog(w io.Writer) Option { return func(p *Promoter) { p.log = w } }

// New returns a Promoter that verifies with v.
func New(reg *registry.Client, v signing.Verifier, opts ...Option) *Promoter {
	p := &Promoter{reg: reg, verifier: v, log: io.Discard, settle: time.Second}
	for _, o := range opts {
		o(p)
	}
	return p
}

func (p *Promoter) logf(format string, args ...any) {
	fmt.Fprintf(p.log, "imagemode promote: "+format+"\n", args...)
}

// RefusedError is a verification failure: nothing was moved.
type RefusedError struct {
	Profile, Layer, Image string
	Reason                string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refusing to promote %s of profile %s (%s): %s; no tag was moved", e.Layer, e.Profile, e.Image, e.Reason)
}

// LostRaceError says another promotion wrote the same release version (from another commit) at the same time and
// won: this run stopped, and the registry keeps the other promotion's release whole.
type LostRaceError struct {
	Ref, Want, Got string
}

func (e *LostRaceError) Error() string {
	return fmt.Sprintf("lost a race: %s now points at %s, not %s — another promotion wrote this version at the same time; "+
		"this run stopped and left that release as it is (a rerun is refused: the version is taken; promote another version, or --force to replace it)", e.Ref, e.Got, e.Want)
}

// Promote verifies every layer of every profile and then moves the release tags. The report lists what moved even
// when an error stops the moves half-way.
func (p *Promoter) Promote(ctx context.Context, cfg Config) (*Report, error) {
	rep, err := p.promote(ctx, cfg)
	var re *RefusedError
	if err != nil && !errors.As(err, &re) && (rep == nil || rep.Refused == "") && registry.IsUnreachable(err) && !strings.Contains(err.Error(), "unreachable") {
		err = fmt.Errorf("the registry is unreachable (run the promotion again when it answers): %w", err)
	}
	return rep, err
}

func (p *Promoter) promote(ctx context.Context, cfg Config) (*Report, error) {
	v, err := ParseTag(cfg.Tag)
	if err != nil {
		return nil, err
	}
	if err := tags.ValidateCommit(cfg.Commit); err != nil {
		return nil, err
	}
	if err := registry.ValidatePrefix(cfg.Registry); err != nil {
		return nil, err
	}
	copyTo := ""
	if cfg.ReleaseRegistry != "" && strings.TrimSuffix(cfg.ReleaseRegistry, "/") != strings.TrimSuffix(cfg.Registry, "/") {
		if err := registry.ValidatePrefix(cfg.ReleaseRegistry); err != nil {
			return nil, fmt.Errorf("--release-registry: %w", err)
		}
		if p.signer == nil && !cfg.DryRun {
			return nil, errors.New("--release-registry needs the signing key: copies are signed again in the release repository")
		}
		copyTo = strings.TrimSuffix(cfg.ReleaseRegistry, "/")
	}
	if len(cfg.Profiles) == 0 || len(cfg.Layers) == 0 {
		return nil, errors.New("nothing to promote: no profile or no layer")
	}
	if err := ValidateProfiles(cfg.Profiles); err != nil {
		return nil, err
	}
	if err := ValidateTagLengths(v, cfg.Profiles); err != nil {
		return nil, err
	}
	if cfg.RollbackTo != "" && (cfg.RollbackTo != v.String() || v.Prerelease()) {
		return nil, fmt.Errorf("--rollback-to %s: a rollback names the stable version being promoted (--tag v%s)", cfg.RollbackTo, cfg.RollbackTo)
	}
	if p.signer == nil && !cfg.DryRun {
		return nil, errors.New("promotion needs the signing key (--key): it signs a release record for every profile")
	}
	rep := &Report{Tag: cfg.Tag, Version: v.String(), Commit: cfg.Commit}

	refused := func(err error) (*Report, error) {
		var re *RefusedError
		if errors.As(err, &re) {
			rep.Refused = err.Error()
		}
		return rep, err
	}

	// 1. Verify everything before touching a tag: the newest run of the commit (its signed record on the run
	// anchor), every layer, and that the record names exactly these digests, passed.
	runs := map[string]*chosenRun{}
	byProfile := map[string][]Checked{}
	for _, prof := range cfg.Profiles {
		promoted, bases := map[string]string{}, map[string]string{}
		var checked []Checked
		for _, l := range cfg.Layers {
			c, err := p.verifyLayer(ctx, cfg, prof, l, promoted, bases)
			if err != nil {
				return refused(err)
			}
			promoted[l.Name], bases[l.Name] = c.Digest, c.chainBase
			checked = append(checked, c)
			rep.Verified = append(rep.Verified, c)
			p.logf("verified %s %s: %s", prof, l.Name, c.Digest)
		}
		run, err := p.newestRun(ctx, cfg, prof)
		if err != nil {
			return refused(err)
		}
		runs[prof] = run
		if err := p.verifyRecord(ctx, cfg, prof, checked, run); err != nil {
			return refused(err)
		}
		p.logf("verified the run record of %s %s (run %s)", short(cfg.Commit), prof, run.rec.RunID)
		byProfile[prof] = checked
	}

	repoOf := func(layer string) string {
		if copyTo != "" {
			return copyTo + "/" + layer
		}
		return strings.TrimSuffix(cfg.Registry, "/") + "/" + layer
	}
	// What the promotion changes on the hosts: the package difference to the release each floating tag names now.
	changes, err := p.hostChanges(ctx, rep.Verified, repoOf)
	rep.Changes = changes
	if err != nil {
		return rep, err
	}
	if cfg.DryRun {
		rep.DryRun = true
		p.logf("dry run: everything verifies; nothing was moved, copied or signed")
		return rep, nil
	}

	// 2. The exact tags X.Y.Z-<profile>: refused when one points elsewhere (unless forced), claimed root first.
	var exact []Move
	for _, c := range rep.Verified {
		exact = append(exact, Move{Repository: repoOf(c.Layer), Tag: v.Tags(c.Profile)[0], Digest: c.Digest, Status: Pending})
	}
	rep.Moves = exact
	for i := range exact {
		m := &exact[i]
		cur, err := p.currentDigest(ctx, m.Repository+":"+m.Tag)
		if err != nil {
			return rep, fmt.Errorf("looking up %s:%s: %w", m.Repository, m.Tag, err)
		}
		if cur != "" && cur != m.Digest && !cfg.Force {
			m.Status, m.Note = Failed, "points at "+cur
			rep.Refused = fmt.Sprintf("%s:%s already points at %s, not %s: a release is never replaced silently (pass --force to move it); no tag was moved",
				m.Repository, m.Tag, cur, m.Digest)
			return rep, errors.New(rep.Refused)
		}
	}

	// 3. Copy to the release registry (and sign there) when asked.
	if copyTo != "" {
		for _, c := range rep.Verified {
			if err := p.copyAndSign(ctx, c, copyTo+"/"+c.Layer); err != nil {
				return rep, err
			}
		}
	}

	// 4. Write the exact tags, read them back, repair what another run mixed in, stop if another run won.
	if err := p.writeExact(ctx, cfg.Profiles, exact); err != nil {
		var lost *LostRaceError
		if errors.As(err, &lost) {
			rep.Refused = err.Error() // a rerun finds the other release's exact tags and is refused too
		}
		return rep, err
	}

	// 5. The signed release record of every profile, on the release's root digest: what the floating tags follow.
	for _, prof := range cfg.Profiles {
		sr, err := p.attestRelease(ctx, cfg, v, prof, byProfile[prof], runs[prof], repoOf)
		if err != nil {
			return rep, err
		}
		rep.Releases = append(rep.Releases, sr)
	}

	// 6. The floating tags X.Y-<profile> and <profile> follow the highest stable release a valid release record
	// describes, whichever run wrote it: every run computes them from what it reads, writes, and reads again until
	// they hold, so concurrent promotions converge on the newest release and never mix layers of two releases.
	if !v.Prerelease() {
		floating, err := p.converge(ctx, cfg, v, repoOf, rep)
		rep.Moves = append(exact, floating...)
		if err != nil {
			return rep, err
		}
	}
	rep.Complete = true
	return rep, nil
}

// MaxTagLen is the longest tag registries accept.
const MaxTagLen = 128

// ValidateTagLengths checks that every release tag of v for the profiles fits in a registry tag.
func ValidateTagLengths(v Version, profiles []string) error {
	for _, prof := range profiles {
		for _, t := range v.Tags(prof) {
			if len(t) > MaxTagLen {
				return fmt.Errorf("the release tag %q would be %d characters long; registries accept %d: shorten the pre-release or the profile",
					t, len(t), MaxTagLen)
			}
		}
	}
	return nil
}

// ValidateProfiles checks the --profile values of a promotion: names that can be part of a tag, each once.
func ValidateProfiles(profiles []string) error {
	seen := map[string]bool{}
	for _, prof := range profiles {
		if err := imgprofile.ValidateName(prof); err != nil {
			return err
		}
		if seen[prof] {
			return fmt.Errorf("--profile %q given twice", prof)
		}
		seen[prof] = true
	}
	return nil
}

func (p *Promoter) currentDigest(ctx context.Context, ref string) (string, error) {
	ok, err := p.reg.Exists(ctx, ref)
	if err != nil || !ok {
		return "", err
	}
	return p.reg.Digest(ctx, ref)
}

// verifyLayer runs every check of one layer of one profile.
func (p *Promoter) verifyLayer(ctx context.Context, cfg Config, prof string, l Layer, promoted, bases map[string]string) (Checked, error) {
	repo := strings.TrimSuffix(cfg.Registry, "/") + "/" + l.Name
	candidate := repo + ":" + tags.Candidate(cfg.Commit, prof)
	refuse := func(image, format string, args ...any) error {
		return &RefusedError{Profile: prof, Layer: l.Name, Image: image, Reason: fmt.Sprintf(format, args...)}
	}
	ok, err := p.reg.Exists(ctx, candidate)
	if err != nil {
		return Checked{}, fmt.Errorf("looking up the candidate %s: %w", candidate, err)
	}
	if !ok {
		return Checked{}, refuse(candidate, "no candidate for commit %s: build-all did not complete for this commit and profile", short(cfg.Commit))
	}
	digest, err := p.reg.Digest(ctx, candidate)
	if err != nil {
		return Checked{}, fmt.Errorf("resolving the candidate %s: %w", candidate, err)
	}
	ref := registry.DigestRef(repo, digest)
	labels, err := p.reg.Labels(ctx, ref)
	if err != nil {
		return Checked{}, fmt.Errorf("reading the labels of %s: %w", ref, err)
	}
	if lp := labels[layers.LabelProfile]; lp != prof {
		return Checked{}, refuse(ref, "its profile label is %q, not %q (release tags never cross profiles or major versions)", lp, prof)
	}
	if ll := labels[layers.LabelLayer]; ll != l.Name {
		return Checked{}, refuse(ref, "its layer label is %q", ll)
	}
	if err := p.verifier.Verify(ctx, ref); err != nil {
		if registry.IsUnreachable(err) {
			return Checked{}, fmt.Errorf("the registry is unreachable while verifying the signature of %s: %w", ref, err)
		}
		return Checked{}, refuse(ref, "signature: %v", err)
	}
	sts, err := p.verifier.Attestations(ctx, ref, signing.PredicateSmoke)
	if err != nil {
		if registry.IsUnreachable(err) {
			return Checked{}, fmt.Errorf("the registry is unreachable while reading the smoke verdicts of %s: %w", ref, err)
		}
		return Checked{}, refuse(ref, "no passing smoke test: %v", err)
	}
	// An image keeps a history of verdicts (one per run that tested it). It passes when some verdict passed and no
	// failed verdict is as new as the newest pass: a later failure (a flaky guest, a changed probe) blocks it until
	// a newer run passes again.
	passed, testedAtCommit := false, false
	var newestPass time.Time
	var failures []smoke.Verdict
	var why []string
	var seen []seenVerdict
	for _, st := range sts {
		vd, err := smoke.ParseVerdict(st.Predicate)
		if err == nil {
			seen = append(seen, seenVerdict{Verdict: vd, predicate: smoke.PredicateDigest(st.Predicate)})
		}
		switch {
		case err != nil:
			// Signed by the key yet malformed: nothing to judge it by, so nothing is promoted past it.
			return Checked{}, refuse(ref, "a signed smoke verdict cannot be read (%v): promotion stops on it", err)
		case vd.Digest != digest:
			why = append(why, fmt.Sprintf("a verdict for %s", vd.Digest))
		case vd.Verdict != smoke.Pass:
			failures = append(failures, vd)
			why = append(why, fmt.Sprintf("the smoke test failed (%s)", vd.Reason))
		default:
			if !passed || vd.Started.After(newestPass) {
				newestPass = vd.Started
			}
			passed = true
			testedAtCommit = testedAtCommit || commitMatches(vd.Commit, cfg.Commit)
		}
	}
	if !passed {
		return Checked{}, refuse(ref, "no passing smoke test: %s", strings.Join(why, "; "))
	}
	for _, f := range failures {
		if !f.Started.Before(newestPass) {
			return Checked{}, refuse(ref, "the smoke test failed (%s) at %s, after its last pass (%s): re-run it",
				f.Reason, stamp(f.Started), stamp(newestPass))
		}
	}
	// The image was built at the tag's commit, or — reused unchanged — passed its smoke test as that commit's
	// candidate (a verdict signed by the key names the commit).
	if rev := labels[layers.LabelRevision]; !commitMatches(rev, cfg.Commit) && !testedAtCommit {
		return Checked{}, refuse(ref, "its revision label is %q, not the tag's commit %s, and no signed passing verdict names that commit", rev, cfg.Commit)
	}
	base := labels[layers.LabelBaseDigest]
	if l.Parent != "" {
		if want := promoted[l.Parent]; base != want {
			return Checked{}, refuse(ref, "broken chain: built on %s, but the %s being promoted is %s", orNone(base), l.Parent, want)
		}
		if lp := labels[layers.LabelParent]; lp != l.Parent {
			return Checked{}, refuse(ref, "its parent label is %q, the graph says %q", lp, l.Parent)
		}
	} else if base == "" {
		return Checked{}, refuse(ref, "no %s label: the base it was built on is unknown", layers.LabelBaseDigest)
	}
	chainBase := base
	if l.Parent != "" {
		chainBase = bases[l.Parent]
	}
	pkgs, err := p.verifyEvidence(ctx, ref, provenance.Expect{Layer: l.Name, Profile: prof, Commit: labels[layers.LabelRevision],
		ParentDigest: promoted[l.Parent], BaseDigest: chainBase}, refuse)
	if err != nil {
		return Checked{}, err
	}
	return Checked{Profile: prof, Layer: l.Name, Candidate: candidate, Digest: digest, verdicts: seen, newestPass: newestPass,
		chainBase: chainBase, packages: pkgs}, nil
}

// verifyEvidence requires the SBOM and the SLSA provenance of the image ref, signed by the key for its digest. The
// provenance must describe this layer and profile, built at the image's revision (the tag's commit, or for a
// layer reused unchanged the commit that built it, which the smoke verdicts tie to the tag's commit), on the
// parent and base being promoted with it. It returns the SBOM's packages.
func (p *Promoter) verifyEvidence(ctx context.Context, ref string, want provenance.Expect, refuse func(image, format string, args ...any) error) ([]sbom.Package, error) {
	sts, err := p.verifier.Attestations(ctx, ref, provenance.PredicateType)
	if err != nil {
		if registry.IsUnreachable(err) {
			return nil, fmt.Errorf("the registry is unreachable while reading the provenance of %s: %w", ref, err)
		}
		return nil, refuse(ref, "no provenance signed by the key (%v): built before imagemode attested provenance? rebuild it (--refresh)", err)
	}
	var why []string
	matched := false
	for _, st := range sts {
		prov, err := provenance.Parse(st.Predicate)
		if err != nil {
			return nil, refuse(ref, "a signed provenance cannot be read (%v): promotion stops on it", err)
		}
		if w := prov.Check(want); w != "" {
			why = append(why, w)
			continue
		}
		matched = true
	}
	if !matched {
		return nil, refuse(ref, "%s", strings.Join(why, "; "))
	}
	pkgs, found, err := signedPackages(ctx, p.verifier, ref)
	switch {
	case !found && registry.IsUnreachable(err):
		return nil, fmt.Errorf("the registry is unreachable while reading the SBOM of %s: %w", ref, err)
	case !found:
		return nil, refuse(ref, "no SBOM signed by the key (%v): built before imagemode attested SBOMs? rebuild it (--refresh)", err)
	case err != nil:
		return nil, refuse(ref, "its signed SBOM cannot be read: %v", err)
	}
	return pkgs, nil
}

// copyAndSign copies the verified digest (and its attestations) to the release repository and signs it there.
func (p *Promoter) copyAndSign(ctx context.Context, c Checked, dstRepo string) error {
	src := registry.DigestRef(strings.TrimSuffix(c.Candidate[:strings.LastIndex(c.Candidate, ":")], "/"), c.Digest)
	if err := p.reg.Copy(ctx, src, dstRepo); err != nil {
		return err
	}
	dst := registry.DigestRef(dstRepo, c.Digest)
	if err := p.reg.CopyAttachment(ctx, src, dstRepo, "att"); err != nil {
		return err
	}
	if err := p.signer.Sign(ctx, dst); err != nil {
		return err
	}
	if err := p.verifier.Verify(ctx, dst); err != nil {
		return fmt.Errorf("the copy %s does not verify after signing: %w", dst, err)
	}
	p.logf("copied and signed %s", dst)
	return nil
}

func commitMatches(label, commit string) bool {
	return len(commit) >= tags.CommitLen && strings.HasPrefix(label, commit)
}

func orNone(s string) string {
	if s == "" {
		return "nothing recorded"
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return t.UTC().Format(time.RFC3339)
}
