package release

import (
	"context"
	"fmt"
	"strings"

	"github.com/imagemode/imagemode/ci/record"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/smoke"
)

// verifyRecord checks the run record promotion follows (newestRun: the expected run's, or the newest on the commit's
// run anchor; ci/record has the threat model): it names exactly the digests being promoted — the candidate tags
// must point at what that run tested — says pass for each, names verdicts the images still carry, and no verdict of
// the commit is newer than the run it records. Verdicts belong to digests: a run of any commit that tested one of
// these digests later than its newest passing verdict and failed (its record on the root image says so) refuses it.
func (p *Promoter) verifyRecord(ctx context.Context, cfg Config, prof string, checked []Checked, run *chosenRun) error {
	refuse := func(layer, image, format string, args ...any) error {
		return &RefusedError{Profile: prof, Layer: layer, Image: image, Reason: fmt.Sprintf(format, args...)}
	}
	chosen := run.rec
	for _, c := range checked {
		image := registry.DigestRef(strings.TrimSuffix(c.Candidate[:strings.LastIndex(c.Candidate, ":")], "/"), c.Digest)
		e, ok := chosen.Entry(c.Layer)
		if !ok {
			return refuse(c.Layer, image, "the run record of run %s has no entry for this layer", chosen.RunID)
		}
		if e.Digest != c.Digest {
			return refuse(c.Layer, image, "the candidate tag %s points at %s, but the newest run of the commit (run %s) tested %s: candidate tags pointing elsewhere are refused",
				c.Candidate, c.Digest, chosen.RunID, e.Digest)
		}
		if e.Verdict != smoke.Pass {
			return refuse(c.Layer, image, "run %s's record says its smoke test failed", chosen.RunID)
		}
		found := false
		for _, sv := range c.verdicts {
			if sv.predicate == e.Predicate {
				found = true
			}
			// A verdict of this commit from another run, newer than the record: that run's record is missing.
			if commitMatches(sv.Commit, cfg.Commit) && sv.RunID != chosen.RunID && sv.Started.After(chosen.Created) {
				return refuse(c.Layer, image, "run %s tested it at %s (%s), after the run record of run %s (%s): the newer run's record is missing, and an older record is never promoted in its place",
					orNone(sv.RunID), stamp(sv.Started), sv.Verdict.Verdict, chosen.RunID, stamp(chosen.Created))
			}
		}
		if !found {
			return refuse(c.Layer, image, "the verdict run %s's record names (%s) is not among the image's signed verdicts: deleted or replaced", chosen.RunID, e.Predicate)
		}
	}
	// Every run that tested a digest of this chain has the same root (a reused layer's ancestors are reused too):
	// its records on the root image say how each digest fared, whichever commit the run built.
	root := checked[0]
	rootRef := registry.DigestRef(strings.TrimSuffix(root.Candidate[:strings.LastIndex(root.Candidate, ":")], "/"), root.Digest)
	sts, err := p.verifier.Attestations(ctx, rootRef, record.PredicateType)
	if err != nil && registry.IsUnreachable(err) {
		return fmt.Errorf("the registry is unreachable while reading the run records of %s: %w", rootRef, err)
	}
	for _, st := range sts {
		r, err := record.Parse(st.Predicate)
		if err != nil {
			return refuse(root.Layer, rootRef, "a signed run record cannot be read (%v): promotion stops on it", err)
		}
		for _, c := range checked {
			e, ok := r.Entry(c.Layer)
			if !ok || e.Digest != c.Digest || e.Verdict == smoke.Pass || !r.Created.After(c.newestPass) {
				continue
			}
			image := registry.DigestRef(strings.TrimSuffix(c.Candidate[:strings.LastIndex(c.Candidate, ":")], "/"), c.Digest)
			return refuse(c.Layer, image, "run %s of commit %s tested this digest at %s, after its last passing verdict (%s), and it failed: the newest verdict for a digest decides, whichever commit's run produced it",
				r.RunID, short(r.Commit), stamp(r.Created), stamp(c.newestPass))
		}
	}
	return nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
