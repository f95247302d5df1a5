package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/tags"
)

// CandidateReport rebuilds the report of a finished run from the registry alone: every layer of the graph at its
// candidate tag sha-<commit12>-<profile>, with the digest, parent digest and revision the images' labels record.
// Steps run apart from the build (smoke-test, sign, promote) start from it instead of a report file. Every layer
// must be there and chain to its parent, or it is an error naming the layer.
func CandidateReport(ctx context.Context, reg *registry.Client, g *layers.Graph, prefix, profile, commit string) (*report.Report, error) {
	if err := registry.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if err := tags.ValidateCommit(commit); err != nil {
		return nil, err
	}
	cand := tags.Candidate(commit, profile)
	rep := &report.Report{Version: report.Version, Commit: commit, Registry: prefix, Profile: profile, Candidates: true}
	digests := map[string]string{}
	for level, lv := range g.Levels() {
		for _, name := range lv {
			l, _ := g.Layer(name)
			repo := strings.TrimSuffix(prefix, "/") + "/" + name
			ref := repo + ":" + cand
			ok, err := reg.Exists(ctx, ref)
			if err != nil {
				return nil, fmt.Errorf("looking up %s: %w", ref, err)
			}
			if !ok {
				return nil, fmt.Errorf("layer %q has no candidate %s: build-all did not complete for commit %s and profile %s", name, ref, commit, profile)
			}
			d, err := reg.Digest(ctx, ref)
			if err != nil {
				return nil, fmt.Errorf("resolving %s: %w", ref, err)
			}
			dref := registry.DigestRef(repo, d)
			labels, err := reg.Labels(ctx, dref)
			if err != nil {
				return nil, err
			}
			parentDigest := labels[layers.LabelBaseDigest]
			if l.Parent != "" && parentDigest != digests[l.Parent] {
				return nil, fmt.Errorf("layer %q (%s) was built on %s, not on the candidate %s %s: the candidates do not form one run",
					name, dref, parentDigest, l.Parent, digests[l.Parent])
			}
			if l.Parent == "" {
				rep.BaseImage, rep.BaseDigest = labels[layers.LabelBaseName], parentDigest
			}
			digests[name] = d
			rep.Layers = append(rep.Layers, report.Layer{Name: name, Parent: l.Parent, Level: level, Repository: repo, Digest: d, Ref: dref,
				CandidateTag: cand, ParentDigest: parentDigest, BaseName: labels[layers.LabelBaseName], Status: report.StatusBuilt})
		}
	}
	if len(rep.Layers) == 0 {
		return nil, errors.New("the graph has no layer")
	}
	return rep, nil
}
