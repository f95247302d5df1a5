package release

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/imagemode/imagemode/ci/record"
	"github.com/imagemode/imagemode/ci/registry"
)

// attestRelease signs the release record of one profile on the release's root digest, unless a valid record of the
// same release, profile and digests is there already (a rerun).
func (p *Promoter) attestRelease(ctx context.Context, cfg Config, v Version, prof string, checked []Checked, run *chosenRun, repoOf func(string) string) (SignedRelease, error) {
	rel := record.Release{Version: record.Version, Release: v.String(), Tag: "v" + v.String(), Commit: cfg.Commit, Profile: prof,
		RunID: run.rec.RunID, RunRecord: run.predicate, Created: time.Now().UTC()}
	parents := map[string]string{}
	for _, l := range cfg.Layers {
		parents[l.Name] = l.Parent
	}
	for _, c := range checked {
		rel.Layers = append(rel.Layers, record.ReleaseLayer{Layer: c.Layer, Parent: parents[c.Layer], Digest: c.Digest})
	}
	if err := rel.Validate(); err != nil {
		return SignedRelease{}, err
	}
	rootRef := registry.DigestRef(repoOf(rel.Layers[0].Layer), rel.Layers[0].Digest)
	existing, err := p.releaseRecords(ctx, rootRef, prof)
	if err != nil {
		return SignedRelease{}, err
	}
	for _, r := range existing {
		if r.Release == rel.Release && sameDigests(r.Digests(), rel.Digests()) {
			p.logf("release record of %s %s: present", rel.Release, prof)
			return SignedRelease{Image: rootRef, Record: r}, nil
		}
	}
	data, err := json.Marshal(rel)
	if err != nil {
		return SignedRelease{}, fmt.Errorf("encoding the release record: %w", err)
	}
	if err := p.signer.Attest(ctx, rootRef, record.ReleasePredicateType, data); err != nil {
		return SignedRelease{}, fmt.Errorf("attesting the release record of %s %s on %s: %w", rel.Release, prof, rootRef, err)
	}
	p.logf("attested the release record of %s %s on %s", rel.Release, prof, rootRef)
	return SignedRelease{Image: rootRef, Record: rel}, nil
}

// releaseRecords reads the signed release records of a profile on an image (none: an empty list). A record signed
// by the key that cannot be read stops the promotion.
func (p *Promoter) releaseRecords(ctx context.Context, ref, prof string) ([]record.Release, error) {
	sts, err := p.verifier.Attestations(ctx, ref, record.ReleasePredicateType)
	if err != nil {
		if registry.IsUnreachable(err) {
			return nil, fmt.Errorf("the registry is unreachable while reading the release records of %s: %w", ref, err)
		}
		return nil, nil // nothing signed there
	}
	var out []record.Release
	for _, st := range sts {
		r, err := record.ParseRelease(st.Predicate)
		if err != nil {
			return nil, fmt.Errorf("a signed release record on %s cannot be read (%v): promotion stops on it", ref, err)
		}
		if r.Profile == prof {
			out = append(out, r)
		}
	}
	return out, nil
}

func sameDigests(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
