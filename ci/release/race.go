package release

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/registry"
)

// Registries have no compare-and-swap on tags: two promotions running at once (two tags pushed together, or the
// same version from two commits) can interleave their writes. The rules that keep a fleet safe anyway:
//
//   - exact tags X.Y.Z-<profile>: each profile's root layer tag is written first and read back; a run that finds
//     another digest there has lost the race and stops before writing anything else. After its writes a run waits
//     (settle), reads every exact tag back, repairs layers another run mixed in and stops if it lost the root;
//   - floating tags X.Y-<profile> and <profile> are not "the release being promoted" but a function of the
//     registry: the highest stable release whose exact tags exist for every layer, chain parent to child and carry
//     valid signatures. Every run computes them from what it reads, writes them, waits, and computes again until
//     nothing changes: the newest complete release always wins and the layers of two releases are never mixed.

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

// release is one complete release of a profile: every layer's digest.
type release struct {
	version Version
	digests map[string]string
}

// converge points the floating tags of every profile at the highest complete release, again and again until a
// round changes nothing. It returns the floating moves (status relative to this run's version).
func (p *Promoter) converge(ctx context.Context, cfg Config, v Version, repoOf func(string) string) ([]Move, error) {
	verified := map[string]error{} // digest ref → signature verification
	wrote := map[string]bool{}
	var last []Move
	for round := 0; round < 8; round++ {
		changed := false
		last = nil
		for _, prof := range cfg.Profiles {
			tags := v.Tags(prof)[1:] // X.Y-<profile>, <profile>
			for i, tag := range tags {
				sameMinor := i == 0
				target, err := p.newestComplete(ctx, cfg, prof, v, sameMinor, repoOf, verified)
				if err != nil {
					return last, err
				}
				if target == nil {
					return last, fmt.Errorf("no complete, verified %s release found for %s:%s (the exact tags just written did not read back)", prof, repoOf(cfg.Layers[0].Name), tag)
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
						m.Status, m.Note = Kept, "newer release "+target.version.String()+" is the newest complete one"
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

// newestComplete finds the highest stable release of a profile (of v's X.Y when sameMinor) whose exact tags exist
// for every layer, whose layers chain parent to child, and whose digests carry valid signatures.
func (p *Promoter) newestComplete(ctx context.Context, cfg Config, prof string, v Version, sameMinor bool,
	repoOf func(string) string, verified map[string]error) (*release, error) {
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
		r, err := p.complete(ctx, cfg, prof, ev, repoOf, verified)
		if err != nil {
			return nil, err
		}
		if r != nil {
			return r, nil
		}
		p.logf("release %s of %s is not complete or not verified: skipped for the floating tags", ev, prof)
	}
	return nil, nil
}

// complete returns the release when all its layers are there, chained and signed; nil when not.
func (p *Promoter) complete(ctx context.Context, cfg Config, prof string, ev Version, repoOf func(string) string, verified map[string]error) (*release, error) {
	r := &release{version: ev, digests: map[string]string{}}
	tag := ev.Tags(prof)[0]
	for _, l := range cfg.Layers {
		ref := repoOf(l.Name) + ":" + tag
		d, err := p.currentDigest(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", ref, err)
		}
		if d == "" {
			return nil, nil
		}
		dref := registry.DigestRef(repoOf(l.Name), d)
		if l.Parent != "" {
			labels, err := p.reg.Labels(ctx, dref)
			if err != nil {
				return nil, fmt.Errorf("reading the labels of %s: %w", dref, err)
			}
			if labels[layers.LabelBaseDigest] != r.digests[l.Parent] {
				return nil, nil // layers of two releases: not one release
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
			return nil, nil
		}
		r.digests[l.Name] = d
	}
	return r, nil
}
