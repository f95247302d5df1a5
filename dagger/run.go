package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"dagger/imagemode/internal/dagger"

	"github.com/imagemode/imagemode/ci/engine"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/smoke"
)

// Run is a family of images built (or loaded) together, and what the stages chained on it found.
type Run struct {
	// The run report (JSON): every layer's repository, digest, parent digest, tags and whether it was built or
	// reused.
	Report string
	// The smoke-test verdicts (JSON), once smoke-test or ci ran in this chain.
	Verdicts string
	// The ci result (JSON: build, signatures, verdicts, attestations), once ci ran in this chain.
	Result string
	// +private
	Mod *Imagemode
}

// Layer is one image of a run.
type Layer struct {
	// Layer name, as in layers.yaml.
	Name string
	// Parent layer ("" for the root).
	Parent string
	// Repository, <registry>/<name>.
	Repository string
	// Manifest digest.
	Digest string
	// Repository@digest.
	Ref string
	// built or reused.
	Status string
	// The run-scoped tag the image was pushed under.
	RunTag string
	// The candidate tag sha-<commit>-<profile>, written when every layer succeeded.
	CandidateTag string
	// The digest it was built FROM.
	ParentDigest string
}

func (r *Run) report() (*report.Report, error) {
	rep, err := report.Parse([]byte(r.Report))
	if err != nil {
		// A run of loose images (Images) is not a full report.
		var loose report.Report
		if jerr := json.Unmarshal([]byte(r.Report), &loose); jerr == nil && len(loose.Layers) > 0 {
			return &loose, nil
		}
		return nil, fmt.Errorf("the run's report: %w", err)
	}
	return rep, nil
}

// refs are the run's images by digest.
func (r *Run) refs() ([]string, *report.Report, error) {
	rep, err := r.report()
	if err != nil {
		return nil, nil, err
	}
	var out []string
	for _, l := range rep.Layers {
		out = append(out, l.Ref)
	}
	return out, rep, nil
}

// Table renders the run report for people: one row per layer.
func (r *Run) Table() (string, error) {
	rep, err := r.report()
	if err != nil {
		return "", fail(err)
	}
	return rep.Table(), nil
}

// Layers lists the run's images.
func (r *Run) Layers() ([]*Layer, error) {
	rep, err := r.report()
	if err != nil {
		return nil, fail(err)
	}
	var out []*Layer
	for _, l := range rep.Layers {
		out = append(out, &Layer{Name: l.Name, Parent: l.Parent, Repository: l.Repository, Digest: l.Digest, Ref: l.Ref,
			Status: l.Status, RunTag: l.RunTag, CandidateTag: l.CandidateTag, ParentDigest: l.ParentDigest})
	}
	return out, nil
}

// Layer returns one image of the run, e.g. `build-all layer --name homepage digest`.
func (r *Run) Layer(
	// The layer's name.
	name string,
) (*Layer, error) {
	ls, err := r.Layers()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range ls {
		if l.Name == name {
			return l, nil
		}
		names = append(names, l.Name)
	}
	return nil, fail(fmt.Errorf("--name %q: the run has %s", name, strings.Join(names, ", ")))
}

// Sign signs every image of the run by digest with a cosign key, in the sha256-<digest>.sig format podman, skopeo
// and bootc verify (no transparency-log upload).
// +cache="never"
func (r *Run) Sign(
	ctx context.Context,
	// Cosign private key.
	key *dagger.Secret,
	// Password of the key.
	// +optional
	password *dagger.Secret,
) (*Run, error) {
	s, si, err := r.Mod.begin(ctx, key, password)
	if err != nil {
		return nil, err
	}
	defer s.close()
	si.Images, _, err = r.refs()
	if err != nil {
		return nil, fail(err)
	}
	out, err := engine.Sign(ctx, si)
	if err != nil {
		return nil, fail(err)
	}
	fmt.Fprint(os.Stderr, out)
	return r, nil
}

// Verify checks that every image of the run carries a signature by --public-key, made for that digest in that
// repository; it fails if any does not.
// +cache="never"
func (r *Run) Verify(ctx context.Context) (string, error) {
	s, si, err := r.Mod.begin(ctx, nil, nil)
	if err != nil {
		return "", err
	}
	defer s.close()
	if si.Images, _, err = r.refs(); err != nil {
		return "", fail(err)
	}
	out, err := engine.Verify(ctx, si)
	return out, fail(err)
}

// SmokeTest boots every image of the run in QEMU (a service container of the engine) and probes it: the guest
// reaches multi-user, plus the probes layers.yaml declares (HTTP pages, MariaDB round trip); in disk mode also
// bootc status shows the tested digest booted and no unit failed. A failing verdict fails the chain; chain attest
// to sign the verdicts.
// +cache="never"
func (r *Run) SmokeTest(
	ctx context.Context,
	// Boot bootc-image-builder disks (release fidelity) instead of the images' own kernel and root filesystem.
	// +optional
	disk bool,
) (*Run, error) {
	s, si, err := r.Mod.begin(ctx, nil, nil)
	if err != nil {
		return nil, err
	}
	defer s.close()
	refs, rep, err := r.refs()
	if err != nil {
		return nil, fail(err)
	}
	if rep.RunID != "" {
		si.Report = r.Report
	} else {
		si.Images = refs
	}
	in := r.Mod.smokeInput(si, disk)
	if in.Dir, err = s.dir(ctx, r.Mod.Dir); err != nil {
		return nil, fail(err)
	}
	verdicts, err := engine.SmokeTest(ctx, s.c, in, os.Stderr)
	if err != nil {
		return nil, fail(err)
	}
	out, err := json.MarshalIndent(verdicts, "", "  ")
	if err != nil {
		return nil, fail(fmt.Errorf("encoding the verdicts: %w", err))
	}
	for _, v := range verdicts {
		if v.Verdict != smoke.Pass {
			return nil, fail(fmt.Errorf("smoke test FAILED for %s: %s\n%s", v.Layer, v.Reason, out))
		}
	}
	next := *r
	next.Verdicts = string(out) + "\n"
	return &next, nil
}

// Attest signs the verdicts of the smoke-test chained before as attestations, and — when they cover the whole
// run — the run record promotion requires.
// +cache="never"
func (r *Run) Attest(
	ctx context.Context,
	// Cosign private key.
	key *dagger.Secret,
	// Password of the key.
	// +optional
	password *dagger.Secret,
) (*Run, error) {
	if r.Verdicts == "" {
		return nil, fail(fmt.Errorf("no verdicts to attest: chain smoke-test before attest"))
	}
	var verdicts []smoke.Verdict
	if err := json.Unmarshal([]byte(r.Verdicts), &verdicts); err != nil {
		return nil, fail(fmt.Errorf("reading the verdicts: %w", err))
	}
	s, si, err := r.Mod.begin(ctx, key, password)
	if err != nil {
		return nil, err
	}
	defer s.close()
	rep, err := report.Parse([]byte(r.Report))
	if err != nil {
		rep = nil // loose images: verdicts only, no run record
	}
	out, err := engine.Attest(ctx, si, rep, verdicts, os.Stderr)
	if err != nil {
		return nil, fail(err)
	}
	fmt.Fprint(os.Stderr, out)
	return r, nil
}

// Ci signs every image of the run, boots and probes each in QEMU, and attests every verdict — failed ones too —
// and the run record: what main.yml runs after build-all. A failed signature or verdict fails it; the result is in
// the run's result field.
// +cache="never"
func (r *Run) Ci(
	ctx context.Context,
	// Cosign private key: signs the layers and their verdicts.
	key *dagger.Secret,
	// Password of the key.
	// +optional
	password *dagger.Secret,
	// Boot bootc-image-builder disks (release fidelity; SSH probes of bootc status and failed units) instead of the
	// images' own kernel and root filesystem.
	// +optional
	disk bool,
) (*Run, error) {
	rep, err := report.Parse([]byte(r.Report))
	if err != nil {
		return nil, fail(fmt.Errorf("ci runs on a build-all run: %w", err))
	}
	s, si, err := r.Mod.begin(ctx, key, password)
	if err != nil {
		return nil, err
	}
	defer s.close()
	in := r.Mod.smokeInput(engine.SignInput{}, disk)
	if in.Dir, err = s.dir(ctx, r.Mod.Dir); err != nil {
		return nil, fail(err)
	}
	res, err := engine.AfterBuild(ctx, s.c, rep, si, in, os.Stderr)
	if res == nil {
		return nil, fail(err)
	}
	out, jerr := res.JSON()
	if err != nil {
		return nil, fail(fmt.Errorf("%w\n\n%s", err, res.Text()))
	}
	if jerr != nil {
		return nil, fail(jerr)
	}
	vs, verr := json.MarshalIndent(res.Verdicts, "", "  ")
	if verr != nil {
		return nil, fail(verr)
	}
	next := *r
	next.Result, next.Verdicts = string(out), string(vs)+"\n"
	return &next, nil
}

// Promote promotes this run's commit with git tag vX.Y.Z[-pre] for --profile, re-reading and verifying everything
// from the registry exactly as the top-level promote does (see there). Returns the promotion report (JSON).
// +cache="never"
func (r *Run) Promote(
	ctx context.Context,
	// The git tag, vX.Y.Z[-pre].
	tag string,
	// Id of the CI run whose signed run record must be promoted; default: the newest record in the registry.
	// +optional
	expectRun string,
) (string, error) {
	rep, err := report.Parse([]byte(r.Report))
	if err != nil {
		return "", fail(fmt.Errorf("promote runs on a build-all run: %w", err))
	}
	return r.Mod.Promote(ctx, tag, []string{rep.Profile}, rep.Commit, "", nil, nil, false, expectRun)
}

// DiskImage builds a qcow2 disk of one layer of the run with the disk builder, following the layer's channel tag
// <repository>:<profile>.
// +cache="never"
func (r *Run) DiskImage(
	ctx context.Context,
	// The layer.
	layer string,
	// OpenSSH public key for bootc-user.
	sshKey string,
) (*dagger.File, error) {
	l, err := r.Layer(layer)
	if err != nil {
		return nil, err
	}
	rep, err := r.report()
	if err != nil {
		return nil, fail(err)
	}
	return r.Mod.DiskImage(ctx, l.Ref, l.Repository+":"+rep.Profile, sshKey)
}

func (m *Imagemode) smokeInput(si engine.SignInput, disk bool) engine.SmokeInput {
	return engine.SmokeInput{SignInput: si, Disk: disk, DiskBuilder: m.DiskBuilder, QEMUImage: m.QemuImage, Accel: m.Accel,
		Deadline: time.Duration(m.Deadline) * time.Second, MemoryMB: m.Memory}
}
