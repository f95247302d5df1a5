// Package flow is the end-to-end verb `ci`: build-all, sign every layer, smoke-test every layer in a VM, attest
// every verdict — one report. GitHub Actions and a laptop run the same thing; the host CLI plugs in buildah and
// QEMU on the host, the Dagger module the engine and QEMU in a service container.
package flow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/pipeline"
	"github.com/imagemode/imagemode/ci/record"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/smoke"
)

// Smoker smoke-tests the layers of a build report.
type Smoker interface {
	Smoke(ctx context.Context, rep *report.Report) ([]smoke.Verdict, error)
}

// Result is the report of one `ci` run.
type Result struct {
	Build    *report.Report  `json:"build"`
	Signed   []string        `json:"signed"`
	Verdicts []smoke.Verdict `json:"verdicts"`
	// Attested lists the digests whose verdicts were attested.
	Attested []string `json:"attested"`
	// Evidence lists the built layers whose SBOM and provenance were attested.
	Evidence []Evidence `json:"evidence"`
	// Recorded says the run record (ci/record) binding the verdicts was attested on the root image(s).
	Recorded bool   `json:"recorded"`
	Verdict  string `json:"verdict"`
	Reason   string `json:"reason,omitempty"`
}

// JSON encodes the result.
func (r *Result) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the ci report: %w", err)
	}
	return append(b, '\n'), nil
}

// Text renders the result for people.
func (r *Result) Text() string {
	var b strings.Builder
	if r.Build != nil {
		b.WriteString(r.Build.Table())
	}
	fmt.Fprintf(&b, "signed %d image(s)\n", len(r.Signed))
	for _, e := range r.Evidence {
		fmt.Fprintf(&b, "SBOM (%d packages) and provenance attested on %s (%s)\n", e.Packages, e.Image, e.Layer)
	}
	for _, v := range r.Verdicts {
		fmt.Fprintf(&b, "%-4s %-10s %s (%s, %s)\n", strings.ToUpper(v.Verdict), v.Layer, v.Image, v.Mode, v.Accel)
		if v.Reason != "" {
			fmt.Fprintf(&b, "     %s\n", v.Reason)
		}
	}
	fmt.Fprintf(&b, "ci: %s", strings.ToUpper(r.Verdict))
	if r.Reason != "" {
		fmt.Fprintf(&b, ": %s", r.Reason)
	}
	b.WriteString("\n")
	return b.String()
}

// Flow runs the stages.
type Flow struct {
	Pipeline *pipeline.Pipeline
	Signer   signing.Signer
	// Anchors writes the commit's run anchor, on which the run record is attested too (record.Anchor).
	Anchors ArtifactWriter
	// Evidence attests every built layer's SBOM and provenance (promotion requires both).
	Evidence *Evidencer
	Smoker   Smoker
	Log      io.Writer
}

// ArtifactWriter writes an artifact's blobs and manifest byte for byte (registry.Client).
type ArtifactWriter interface {
	PutArtifact(ctx context.Context, repo string, manifest []byte, mediaType string, blobs map[string][]byte) (string, error)
}

// ErrFailed is returned (wrapped) when a stage failed; the result says which.
var ErrFailed = errors.New("ci failed")

// Run builds, signs, smoke-tests and attests. The result is returned also on failure, as far as it got.
func (f *Flow) Run(ctx context.Context, cfg pipeline.Config) (*Result, error) {
	res := &Result{Verdict: smoke.Fail}
	if f.Signer == nil {
		return res, errors.New("ci needs the signing key (--key): candidates are signed before their smoke tests")
	}
	rep, err := f.Pipeline.BuildAll(ctx, cfg)
	res.Build = rep
	if err != nil {
		res.Reason = "build: " + err.Error()
		return res, fmt.Errorf("%w: build: %w", ErrFailed, err)
	}
	return f.AfterBuild(ctx, rep)
}

// AfterBuild signs, smoke-tests and attests the layers of a finished build (the module's `build-all … ci`).
func (f *Flow) AfterBuild(ctx context.Context, rep *report.Report) (*Result, error) {
	res := &Result{Verdict: smoke.Fail, Build: rep}
	if f.Signer == nil {
		return res, errors.New("ci needs the signing key (--key): candidates are signed before their smoke tests")
	}
	if f.Evidence == nil {
		return res, errors.New("ci needs the registry to make SBOMs and provenance from")
	}
	for _, l := range rep.Layers {
		// Reused layers are signed already; signing again is a no-op (duplicate signatures are detected).
		if err := f.Signer.Sign(ctx, l.Ref); err != nil {
			res.Reason = "sign: " + err.Error()
			return res, fmt.Errorf("%w: %w", ErrFailed, err)
		}
		res.Signed = append(res.Signed, l.Ref)
	}
	ev, err := f.Evidence.Attest(ctx, rep)
	res.Evidence = ev
	if err != nil {
		res.Reason = "sbom and provenance: " + err.Error()
		return res, fmt.Errorf("%w: %w", ErrFailed, err)
	}
	verdicts, err := f.Smoker.Smoke(ctx, rep)
	res.Verdicts = verdicts
	if err != nil {
		res.Reason = "smoke: " + err.Error()
		return res, fmt.Errorf("%w: smoke: %w", ErrFailed, err)
	}
	var failed []string
	for i := range verdicts {
		v := &verdicts[i]
		if v.Commit == "" {
			v.Commit = rep.Commit
		}
		v.RunID = rep.RunID
		if v.Verdict != smoke.Pass {
			failed = append(failed, v.Layer+" ("+v.Reason+")")
		}
	}
	// Every verdict is attested, failed ones too, and then the run record that binds them: promotion requires it.
	preds, err := smoke.Attest(ctx, f.Signer, verdicts, f.log())
	for _, v := range verdicts {
		if _, ok := preds[v.Image]; ok {
			res.Attested = append(res.Attested, v.Digest)
		}
	}
	if err != nil {
		res.Reason = "attest: " + err.Error()
		return res, fmt.Errorf("%w: %w", ErrFailed, err)
	}
	if len(verdicts) == len(rep.Layers) {
		if err := WriteRecord(ctx, f.Signer, f.Anchors, rep, verdicts, preds); err != nil {
			res.Reason = "run record: " + err.Error()
			return res, fmt.Errorf("%w: %w", ErrFailed, err)
		}
		res.Recorded = true
	}
	if len(verdicts) != len(rep.Layers) {
		res.Reason = fmt.Sprintf("smoke: %d verdict(s) for %d layer(s)", len(verdicts), len(rep.Layers))
		return res, fmt.Errorf("%w: %s", ErrFailed, res.Reason)
	}
	if len(failed) > 0 {
		res.Reason = "smoke test failed: " + strings.Join(failed, "; ")
		return res, fmt.Errorf("%w: %s", ErrFailed, res.Reason)
	}
	res.Verdict = smoke.Pass
	return res, nil
}

func (f *Flow) log() io.Writer {
	if f.Log == nil {
		return io.Discard
	}
	return f.Log
}

// CoversReport says whether verdicts judge exactly the layers of rep (nil: no report): only then is a run record
// written for them.
func CoversReport(rep *report.Report, verdicts []smoke.Verdict) bool {
	if rep == nil || len(verdicts) != len(rep.Layers) {
		return false
	}
	by := map[string]string{}
	for _, v := range verdicts {
		by[v.Image] = v.Layer
	}
	for _, l := range rep.Layers {
		if by[l.Ref] != l.Name {
			return false
		}
	}
	return true
}

// WriteRecord attests the run record of a report's verdicts on every root layer of the run (the layers built on
// the profile's base image) and on the run anchor of the commit and profile in each root's repository: promotion
// finds the commit's runs on the anchor (by computed digest, no tag trusted) and every run that tested a digest on
// the root.
func WriteRecord(ctx context.Context, s signing.Signer, anchors ArtifactWriter, rep *report.Report, verdicts []smoke.Verdict, preds map[string]string) error {
	if anchors == nil {
		return errors.New("the run record needs a registry to write the run anchor to")
	}
	rec, err := record.New(rep.Commit, rep.Profile, rep.RunID, verdicts, preds, time.Now())
	if err != nil {
		return err
	}
	manifest, _, err := record.Anchor(rep.Commit, rep.Profile)
	if err != nil {
		return err
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding the run record: %w", err)
	}
	roots := 0
	for _, l := range rep.Layers {
		if l.Parent != "" {
			continue
		}
		roots++
		if err := s.Attest(ctx, l.Ref, record.PredicateType, data); err != nil {
			return fmt.Errorf("attesting the run record on %s: %w", l.Ref, err)
		}
		repo, _, _ := strings.Cut(l.Ref, "@")
		anchor, err := anchors.PutArtifact(ctx, repo, manifest, record.ManifestMediaType, map[string][]byte{record.EmptyMediaType: record.EmptyBlob})
		if err != nil {
			return fmt.Errorf("writing the run anchor of %s %s: %w", rep.Commit, rep.Profile, err)
		}
		if err := s.Attest(ctx, anchor, record.PredicateType, data); err != nil {
			return fmt.Errorf("attesting the run record on the run anchor %s: %w", anchor, err)
		}
	}
	if roots == 0 {
		return fmt.Errorf("the report has no root layer to attest the run record on")
	}
	return nil
}

// HostSmoker smoke-tests with QEMU on this host (the CLI's `ci`).
type HostSmoker struct {
	Tester *smoke.Tester
	Graph  *layers.Graph
	// Template carries the mode, acceleration, deadline and memory of every test.
	Template smoke.Spec
}

// Smoke implements Smoker: one VM per layer, in build order.
func (h HostSmoker) Smoke(ctx context.Context, rep *report.Report) ([]smoke.Verdict, error) {
	var out []smoke.Verdict
	for _, l := range rep.Layers {
		gl, ok := h.Graph.Layer(l.Name)
		if !ok {
			return out, fmt.Errorf("layer %q is not in %s", l.Name, h.Graph.File)
		}
		spec := h.Template
		spec.Image, spec.Layer, spec.Profile, spec.Commit, spec.Smoke = l.Ref, l.Name, rep.Profile, rep.Commit, gl.Smoke
		v, err := h.Tester.Test(ctx, spec)
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}
