package release

import (
	"context"
	"fmt"
	"strings"

	"github.com/imagemode/imagemode/ci/record"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/smoke"
)

// verifyRecord checks the signed run record of the commit and profile (ci/record has the threat model): it must
// exist (the expected run's, or the newest), say pass for exactly the digests being promoted, name verdicts the
// images still carry, and no verdict of the commit may be newer than the run it records. It returns the run id.
func (p *Promoter) verifyRecord(ctx context.Context, cfg Config, prof string, checked []Checked) (string, error) {
	root := checked[0]
	rootRef := registry.DigestRef(strings.TrimSuffix(root.Candidate[:strings.LastIndex(root.Candidate, ":")], "/"), root.Digest)
	refuse := func(layer, image, format string, args ...any) error {
		return &RefusedError{Profile: prof, Layer: layer, Image: image, Reason: fmt.Sprintf(format, args...)}
	}
	sts, err := p.verifier.Attestations(ctx, rootRef, record.PredicateType)
	if err != nil {
		if registry.IsUnreachable(err) {
			return "", fmt.Errorf("the registry is unreachable while reading the run records of %s: %w", rootRef, err)
		}
		return "", refuse(root.Layer, rootRef, "no signed run record of commit %s: the ci run writes one after attesting every verdict (%v)", short(cfg.Commit), err)
	}
	var chosen *record.Record
	var runs []string
	for _, st := range sts {
		r, err := record.Parse(st.Predicate)
		if err != nil {
			return "", refuse(root.Layer, rootRef, "a signed run record cannot be read (%v): promotion stops on it", err)
		}
		if !commitMatches(r.Commit, cfg.Commit) || r.Profile != prof {
			continue
		}
		runs = append(runs, r.RunID)
		switch {
		case cfg.ExpectRun != "":
			if r.RunID == cfg.ExpectRun {
				chosen = &r
			}
		case chosen == nil || r.Created.After(chosen.Created):
			chosen = &r
		}
	}
	if chosen == nil {
		if cfg.ExpectRun != "" {
			return "", refuse(root.Layer, rootRef, "no signed run record of run %s (the run expected for commit %s; records found: %s): missing, deleted or replaced",
				cfg.ExpectRun, short(cfg.Commit), listOrNone(runs))
		}
		return "", refuse(root.Layer, rootRef, "no signed run record of commit %s and profile %s", short(cfg.Commit), prof)
	}
	for _, c := range checked {
		image := registry.DigestRef(strings.TrimSuffix(c.Candidate[:strings.LastIndex(c.Candidate, ":")], "/"), c.Digest)
		e, ok := chosen.Entry(c.Layer)
		if !ok {
			return "", refuse(c.Layer, image, "the run record of run %s has no entry for this layer", chosen.RunID)
		}
		if e.Digest != c.Digest {
			return "", refuse(c.Layer, image, "run %s tested %s, not this digest", chosen.RunID, e.Digest)
		}
		if e.Verdict != smoke.Pass {
			return "", refuse(c.Layer, image, "run %s's record says its smoke test failed", chosen.RunID)
		}
		found := false
		for _, sv := range c.verdicts {
			if sv.predicate == e.Predicate {
				found = true
			}
			// A verdict of this commit from another run, newer than the record: that run's record is missing.
			if commitMatches(sv.Commit, cfg.Commit) && sv.RunID != chosen.RunID && sv.Started.After(chosen.Created) {
				return "", refuse(c.Layer, image, "run %s tested it at %s (%s), after the run record of run %s (%s): the newer run's record is missing, and an older record is never promoted in its place",
					orNone(sv.RunID), stamp(sv.Started), sv.Verdict.Verdict, chosen.RunID, stamp(chosen.Created))
			}
		}
		if !found {
			return "", refuse(c.Layer, image, "the verdict run %s's record names (%s) is not among the image's signed verdicts: deleted or replaced", chosen.RunID, e.Predicate)
		}
	}
	return chosen.RunID, nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
