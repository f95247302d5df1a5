package release

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/record"
	"github.com/imagemode/imagemode/ci/registry"
)

// Registries have no compare-and-swap on tags: two promotions running at once (two tags pushed together, or the
// same version from two commits) can interleave their writes. The rules that keep a fleet safe anyway:
//
//   - exact tags X.Y.Z-<profile>: each profile's root layer tag is written first and read back; a run that finds
//     another digest there has lost the race and stops before writing anything else. After its writes a run waits
//     (settle), reads every exact tag back, repairs layers another run mixed in and stops if it lost the root;
//   - floating tags X.Y-<profile> and <profile> are not "the release being promoted" but a function of the
//     registry: the highest stable release a valid signed release record describes (on its root digest), whose
//     exact tags all point at the record's digests, chain parent to child and carry valid signatures. Exact tags
//     without a record are reported and never followed; a release with a record that no longer verifies stops the
//     run; the floating tags never move to a lower version unless --rollback-to names it. Every run computes them
//     from what it reads, writes them, waits, and computes again until nothing changes: the newest verified
//     release always wins and the layers of two releases are never mixed.

// writeExact writes the exact tags of every profile (moves in layer order, root first) and reads them back.
func (p *Promoter) writeExact(ctx context.Context, profiles []string, moves []Move) error {
	byProfile := map[string][]*Move{}
	for i := range moves {
		m := &moves[i]
		prof := profileOfExact(m.Tag, profiles)
		byProfile[prof] = append(byProfile[prof], m)
	}
	// write points m's tag at its digest unless it does already; it says whether it wrote.
	write := func(m *Move) (bool, error) {
		ref := m.Repository + ":" + m.Tag
		cur, err := p.currentDigest(ctx, ref)
		if err != nil {
			m.Status, m.Note = Failed, err.Error()
			return false, fmt.Errorf("reading %s: %w", ref, err)
		}
		if cur == m.Digest {
			if m.Status == Pending {
				m.Status = Unchanged
			}
			return false, nil
		}
		if err := p.reg.Tag(ctx, registry.DigestRef(m.Repository, m.Digest), m.Tag); err != nil {
			m.Status, m.Note = Failed, err.Error()
			return false, fmt.Errorf("moving %s: %w", ref, err)
		}
		m.Status = Moved
		p.logf("moved %s -> %s", ref, m.Digest)
		return true, nil
	}
	// ownsRoot reads the profile's root tag back: another digest there means another run won.
	ownsRoot := func(ms []*Move) error {
		root := ms[0]
		ref := root.Repository + ":" + root.Tag
		cur, err := p.currentDigest(ctx, ref)
		if err != nil {
			return fmt.Errorf("reading %s back: %w", ref, err)
		}
		if cur != root.Digest {
			root.Status, root.Note = Failed, "lost to "+cur
			return &LostRaceError{Ref: ref, Want: root.Digest, Got: cur}
		}
		return nil
	}
	for _, prof := range profiles {
		ms := byProfile[prof]
		if _, err := write(ms[0]); err != nil {
			return err
		}
		if err := ownsRoot(ms); err != nil {
			return err
		}
		for _, m := range ms[1:] {
			if err := ownsRoot(ms); err != nil {
				return err
			}
			if _, err := write(m); err != nil {
				return err
			}
		}
	}
	// Read back after the writes in flight have landed; repair what another run mixed in; twice quiet = done.
	quiet := 0
	for round := 0; round < 10 && quiet < 2; round++ {
		if err := p.sleep(ctx); err != nil {
			return err
		}
		repaired := false
		for _, prof := range profiles {
			ms := byProfile[prof]
			if err := ownsRoot(ms); err != nil {
				return err
			}
			for _, m := range ms[1:] {
				wrote, err := write(m)
				if err != nil {
					return err
				}
				if wrote {
					m.Note = "repaired: another promotion had written it"
					repaired = true
				}
			}
		}
		if repaired {
			quiet = 0
		} else {
			quiet++
		}
	}
	if quiet < 2 {
		return fmt.Errorf("the exact release tags kept changing under this run (another promotion of the same version keeps writing them)")
	}
	return nil
}

func profileOfExact(tag string, profiles []string) string {
	best := ""
	for _, prof := range profiles {
		if strings.HasSuffix(tag, "-"+prof) && len(prof) > len(best) {
			best = prof
		}
	}
	return best
}

func (p *Promoter) sleep(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(p.settle):
		return nil
	}
}

// release is one complete release of a profile: every layer's digest, from its signed release record.
type release struct {
	version Version
	digests map[string]string
}

// converge points the floating tags of every profile at the highest stable release a valid signed release record
// describes, again and again until a round changes nothing. The floating tags never move to a lower version than
// the one they point at unless cfg.RollbackTo names it. It returns the floating moves (status relative to this
// run's version).
func (p *Promoter) converge(ctx context.Context, cfg Config, v Version, repoOf func(string) string, rep *Report) ([]Move, error) {
	verified := map[string]error{} // digest ref → signature verification
	wrote := map[string]bool{}
	ignored := map[string]bool{}
	var last []Move
	for round := 0; round < 8; round++ {
		changed := false
		last = nil
		for _, prof := range cfg.Profiles {
			tags := v.Tags(prof)[1:] // X.Y-<profile>, <profile>
			for i, tag := range tags {
				sameMinor := i == 0
				var target *release
				var err error
				if cfg.RollbackTo != "" {
					target, err = p.releaseOf(ctx, cfg, prof, v, repoOf, verified, nil)
				} else {
					target, err = p.newestRelease(ctx, cfg, prof, v, sameMinor, repoOf, verified, func(note string) {
						if !ignored[note] {
							ignored[note] = true
							rep.Ignored = append(rep.Ignored, note)
							p.logf("%s", note)
						}
					})
				}
				if err != nil {
					return last, err
				}
				if target == nil {
					return last, fmt.Errorf("no %s release with a valid signed release record found for %s:%s (the record this run attested did not read back)", prof, repoOf(cfg.Layers[0].Name), tag)
				}
				if target, err = p.checkForward(ctx, cfg, prof, tag, sameMinor, target, repoOf, verified); err != nil {
					return last, err
				}
				for _, l := range cfg.Layers {
					m := Move{Repository: repoOf(l.Name), Tag: tag, Digest: target.digests[l.Name]}
					ref := m.Repository + ":" + m.Tag
					cur, err := p.currentDigest(ctx, ref)
					if err != nil {
						return last, fmt.Errorf("reading %s: %w", ref, err)
					}
					if cur != m.Digest {
						if err := p.reg.Tag(ctx, registry.DigestRef(m.Repository, m.Digest), m.Tag); err != nil {
							m.Status, m.Note = Failed, err.Error()
							return append(last, m), fmt.Errorf("moving %s: %w", ref, err)
						}
						p.logf("moved %s -> %s (release %s)", ref, m.Digest, target.version)
						changed, wrote[ref] = true, true
					}
					switch {
					case target.version.Compare(v) != 0:
						m.Status, m.Note = Kept, "newer release "+target.version.String()+" is the newest verified one"
					case wrote[ref]:
						m.Status = Moved
					default:
						m.Status = Unchanged
					}
					last = append(last, m)
				}
			}
		}
		if !changed {
			return last, nil
		}
		if err := p.sleep(ctx); err != nil {
			return last, err
		}
	}
	return last, fmt.Errorf("the floating release tags did not settle: other promotions kept moving them; run it again")
}

// BackwardsError refuses to move a floating tag to a lower version than the one it points at.
type BackwardsError struct {
	Ref           string
	Current, Next string
}

func (e *BackwardsError) Error() string {
	if e.Current == "" {
		return fmt.Sprintf("%s points at a family no signed release record describes: refusing to move it to %s (pass --rollback-to %s to re-point it deliberately)",
			e.Ref, e.Next, e.Next)
	}
	return fmt.Sprintf("%s points at release %s; the newest verified release found is %s, a lower version: floating tags never move backwards "+
		"(a newer release hidden or broken?); pass --rollback-to %s with --tag v%s to roll back deliberately", e.Ref, e.Current, e.Next, e.Next, e.Next)
}

// checkForward refuses a move of a floating tag to a lower version than its current one, unless cfg.RollbackTo
// names the target. The current version is that of the signed release records on the digest the tag's root layer
// points at (the highest whose digests all match the floating tags, else the highest there).
//
// A higher current release that verifies now is the target instead: another promotion wrote it (exact tags, then
// its record, then the floating tags) while this run was looking, and it is the newest verified one after all.
func (p *Promoter) checkForward(ctx context.Context, cfg Config, prof, tag string, sameMinor bool, target *release,
	repoOf func(string) string, verified map[string]error) (*release, error) {
	if cfg.RollbackTo != "" && cfg.RollbackTo == target.version.String() {
		return target, nil
	}
	root := cfg.Layers[0].Name
	ref := repoOf(root) + ":" + tag
	d, err := p.currentDigest(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	if d == "" {
		return target, nil // a new channel
	}
	recs, err := p.releaseRecords(ctx, registry.DigestRef(repoOf(root), d), prof)
	if err != nil {
		return nil, err
	}
	current := map[string]string{}
	for _, l := range cfg.Layers {
		cd, err := p.currentDigest(ctx, repoOf(l.Name)+":"+tag)
		if err != nil {
			return nil, fmt.Errorf("reading %s:%s: %w", repoOf(l.Name), tag, err)
		}
		current[l.Name] = cd
	}
	var best, exact *Version
	for _, r := range recs {
		rv, err := ParseTag(r.Tag)
		if err != nil || rv.Prerelease() || r.Layers[0].Digest != d || (sameMinor && (rv.Major != target.version.Major || rv.Minor != target.version.Minor)) {
			continue
		}
		if best == nil || rv.Compare(*best) > 0 {
			best = &rv
		}
		if sameDigests(r.Digests(), current) && (exact == nil || rv.Compare(*exact) > 0) {
			exact = &rv
		}
	}
	if exact != nil {
		best = exact
	}
	if best == nil {
		return nil, &BackwardsError{Ref: ref, Next: target.version.String()}
	}
	if target.version.Compare(*best) < 0 {
		newer, err := p.releaseOf(ctx, cfg, prof, *best, repoOf, verified, func(string) {})
		if err != nil {
			return nil, err // it has a record and no longer verifies: stop, never skip it
		}
		if newer != nil {
			return newer, nil
		}
		return nil, &BackwardsError{Ref: ref, Current: best.String(), Next: target.version.String()}
	}
	return target, nil
}

// newestRelease finds the highest stable release of a profile (of v's X.Y when sameMinor) that a valid signed
// release record describes. Exact tags without such a record are reported through note and never followed; a
// release whose record is valid but which no longer verifies (a signature, the chain, an exact tag re-pointed)
// stops the promotion: it is never skipped silently.
func (p *Promoter) newestRelease(ctx context.Context, cfg Config, prof string, v Version, sameMinor bool,
	repoOf func(string) string, verified map[string]error, note func(string)) (*release, error) {
	root := cfg.Layers[0].Name
	existing, err := p.reg.Tags(ctx, repoOf(root))
	if err != nil {
		return nil, fmt.Errorf("listing the release tags of %s: %w", repoOf(root), err)
	}
	var versions []Version
	for _, t := range existing {
		ev, ok := parseReleaseTag(t, prof)
		if !ok || (sameMinor && (ev.Major != v.Major || ev.Minor != v.Minor)) {
			continue
		}
		versions = append(versions, ev)
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i].Compare(versions[j]) > 0 })
	for _, ev := range versions {
		r, err := p.releaseOf(ctx, cfg, prof, ev, repoOf, verified, note)
		if err != nil {
			return nil, err
		}
		if r != nil {
			return r, nil
		}
	}
	return nil, nil
}

// releaseOf returns release ev of a profile from the signed release record on its root exact tag's digest; nil
// (reported through note) when there is none; an error when the record is there and the release does not verify.
func (p *Promoter) releaseOf(ctx context.Context, cfg Config, prof string, ev Version, repoOf func(string) string,
	verified map[string]error, note func(string)) (*release, error) {
	tag := ev.Tags(prof)[0]
	root := cfg.Layers[0].Name
	rootTag := repoOf(root) + ":" + tag
	d, err := p.currentDigest(ctx, rootTag)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", rootTag, err)
	}
	if d == "" {
		if note == nil {
			return nil, fmt.Errorf("%s does not exist", rootTag)
		}
		return nil, nil
	}
	recs, err := p.releaseRecords(ctx, registry.DigestRef(repoOf(root), d), prof)
	if err != nil {
		return nil, err
	}
	var rec *record.Release
	for i := range recs {
		if recs[i].Release == ev.String() && recs[i].Layers[0].Layer == root && recs[i].Layers[0].Digest == d {
			rec = &recs[i]
		}
	}
	if rec == nil {
		if note == nil {
			return nil, fmt.Errorf("%s (%s) has no signed release record", rootTag, d)
		}
		note(fmt.Sprintf("%s: no signed release record describes it: never followed", tag))
		return nil, nil
	}
	broken := func(layer, format string, args ...any) error {
		return fmt.Errorf("release %s of %s no longer verifies: layer %s: %s; the floating tags are not moved past it — repair or re-promote it",
			ev, prof, layer, fmt.Sprintf(format, args...))
	}
	r := &release{version: ev, digests: rec.Digests()}
	for _, l := range cfg.Layers {
		want, ok := r.digests[l.Name]
		if !ok {
			return nil, broken(l.Name, "its release record has no entry for it")
		}
		ref := repoOf(l.Name) + ":" + tag
		cur, err := p.currentDigest(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", ref, err)
		}
		if cur != want {
			return nil, broken(l.Name, "%s points at %s, the signed release record says %s", ref, orNone(cur), want)
		}
		dref := registry.DigestRef(repoOf(l.Name), want)
		if l.Parent != "" {
			labels, err := p.reg.Labels(ctx, dref)
			if err != nil {
				return nil, fmt.Errorf("reading the labels of %s: %w", dref, err)
			}
			if labels[layers.LabelBaseDigest] != r.digests[l.Parent] {
				return nil, broken(l.Name, "%s is built on %s, not on the release's %s", dref, orNone(labels[layers.LabelBaseDigest]), r.digests[l.Parent])
			}
		}
		verr, ok := verified[dref]
		if !ok {
			verr = p.verifier.Verify(ctx, dref)
			if verr != nil && registry.IsUnreachable(verr) {
				return nil, fmt.Errorf("the registry is unreachable while verifying %s: %w", dref, verr)
			}
			verified[dref] = verr
		}
		if verr != nil {
			return nil, broken(l.Name, "the signature of %s: %v", dref, verr)
		}
	}
	return r, nil
}
