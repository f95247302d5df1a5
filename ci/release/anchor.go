package release

import (
	"context"
	"fmt"
	"strings"

	"github.com/imagemode/imagemode/ci/record"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/smoke"
)

// chosenRun is the run record promotion follows for one profile: the newest of the commit (or the expected one),
// found on the commit's run anchor.
type chosenRun struct {
	rec       record.Record
	predicate string // digest of the record's statement predicate
	anchor    string // the anchor's digest reference
}

// newestRun reads the signed run records on the run anchor of the commit and profile — a digest promotion computes,
// so no tag a registry writer can move decides which runs exist — and returns the expected run's, or the newest.
func (p *Promoter) newestRun(ctx context.Context, cfg Config, prof string) (*chosenRun, error) {
	root := cfg.Layers[0].Name
	_, digest, err := record.Anchor(cfg.Commit, prof)
	if err != nil {
		return nil, err
	}
	anchor := registry.DigestRef(strings.TrimSuffix(cfg.Registry, "/")+"/"+root, digest)
	refuse := func(format string, args ...any) error {
		return &RefusedError{Profile: prof, Layer: root, Image: anchor, Reason: fmt.Sprintf(format, args...)}
	}
	sts, err := p.verifier.Attestations(ctx, anchor, record.PredicateType)
	if err != nil {
		if registry.IsUnreachable(err) {
			return nil, fmt.Errorf("the registry is unreachable while reading the run records of commit %s: %w", short(cfg.Commit), err)
		}
		return nil, refuse("no signed run record of commit %s on its run anchor: the ci run writes one after attesting every verdict (%v)", short(cfg.Commit), err)
	}
	var chosen *chosenRun
	var runs []string
	for _, st := range sts {
		r, err := record.Parse(st.Predicate)
		if err != nil {
			return nil, refuse("a signed run record cannot be read (%v): promotion stops on it", err)
		}
		if !commitMatches(r.Commit, cfg.Commit) || r.Profile != prof {
			continue // a record copied from another commit's anchor never counts
		}
		runs = append(runs, r.RunID)
		c := &chosenRun{rec: r, predicate: smoke.PredicateDigest(st.Predicate), anchor: anchor}
		switch {
		case cfg.ExpectRun != "":
			if r.RunID == cfg.ExpectRun {
				chosen = c
			}
		case chosen == nil || r.Created.After(chosen.rec.Created):
			chosen = c
		}
	}
	if chosen == nil {
		if cfg.ExpectRun != "" {
			return nil, refuse("no signed run record of run %s (the run expected for commit %s; records found: %s): missing, deleted or replaced",
				cfg.ExpectRun, short(cfg.Commit), listOrNone(runs))
		}
		return nil, refuse("no signed run record of commit %s and profile %s on its run anchor", short(cfg.Commit), prof)
	}
	return chosen, nil
}
