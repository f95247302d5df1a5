package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"dagger/imagemode/internal/dagger"

	"github.com/imagemode/imagemode/ci/report"
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

// report parses the run's report; a run of loose images (Images) is not a whole report and is read as it is.
func (r *Run) report() (rep *report.Report, whole bool, err error) {
	if rep, err := report.Parse([]byte(r.Report)); err == nil {
		return rep, true, nil
	}
	var loose report.Report
	if jerr := json.Unmarshal([]byte(r.Report), &loose); jerr == nil && len(loose.Layers) > 0 {
		return &loose, false, nil
	}
	_, err = report.Parse([]byte(r.Report))
	return nil, false, fmt.Errorf("the run's report: %w", err)
}

// withImages hands the run's images to the CLI: the report file of a whole run (so that verdicts belong to it),
// or --image for loose images. It returns their references.
func (r *Run) withImages(in *invocation) ([]string, error) {
	rep, whole, err := r.report()
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, l := range rep.Layers {
		refs = append(refs, l.Ref)
	}
	if whole {
		in.arg("--from-report", in.withFile("report.json", r.Report))
		return refs, nil
	}
	for _, ref := range refs {
		in.arg("--image", ref)
	}
	return refs, nil
}

// Table renders the run report for people: one row per layer.
func (r *Run) Table() (string, error) {
	rep, _, err := r.report()
	if err != nil {
		return "", fail(err)
	}
	return rep.Table(), nil
}

// Layers lists the run's images.
func (r *Run) Layers() ([]*Layer, error) {
	rep, _, err := r.report()
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
// and bootc verify (no transparency-log upload), and attests the SBOM and SLSA provenance of every layer a
// build-all run built.
// +cache="never"
func (r *Run) Sign(
	ctx context.Context,
	// Cosign private key.
	key *dagger.Secret,
	// Password of the key.
	// +optional
	password *dagger.Secret,
	// The builder named in the provenance of the layers the run built; default: the Dagger module.
	// +default="https://imagemode.dev/builders/dagger-module"
	builderId string,
) (*Run, error) {
	in := r.Mod.cli("sign", "--builder-id", builderId).withRegistryAuth(r.Mod).withSigningKey(key, password)
	in.fresh = true
	if _, err := r.withImages(in); err != nil {
		return nil, fail(err)
	}
	o, err := in.run(ctx)
	if err != nil {
		return nil, fail(err)
	}
	fmt.Fprint(os.Stderr, o.stdout)
	return r, nil
}

// Verify checks that every image of the run carries a signature by --public-key, made for that digest in that
// repository; it fails if any does not.
// +cache="never"
func (r *Run) Verify(ctx context.Context) (string, error) {
	in := r.Mod.cli("verify").withRegistryAuth(r.Mod).withKeyFile("--public-key", "cosign.pub", r.Mod.PublicKey)
	in.fresh = true
	if _, err := r.withImages(in); err != nil {
		return "", fail(err)
	}
	o, err := in.run(ctx)
	if err != nil {
		if o != nil {
			return "", fail(fmt.Errorf("%w\n%s", err, o.stdout))
		}
		return "", fail(err)
	}
	return o.stdout, nil
}

// smoke is a smoke-test or ci run of the CLI: QEMU in the toolbox (root capabilities, /dev/kvm), the VM settings,
// the images, and in disk mode a disk of each made by the disk builder.
func (r *Run) smoke(ctx context.Context, verb string, disk bool, reportPath string) (*invocation, error) {
	m := r.Mod
	in := m.cli(verb, "--accel", m.Accel, "--deadline", strconv.Itoa(m.Deadline)+"s", "--memory", strconv.Itoa(m.Memory),
		"--report", reportPath).withDir(m).withRegistryAuth(m)
	in.ctr = in.ctr.WithDirectory("/work/out", dag.Directory())
	in.fresh, in.insecure = true, true
	refs, err := r.withImages(in)
	if err != nil {
		return nil, err
	}
	if disk {
		if err := m.withDisks(ctx, in, refs); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// SmokeTest boots every image of the run in QEMU and probes it: the guest reaches multi-user, plus the probes
// layers.yaml declares (HTTP pages, MariaDB round trip); in disk mode also bootc status shows the tested digest
// booted and no unit failed. It is `imagemode smoke` in the module's toolbox container, the code CI runs on
// hosts. A failing verdict fails the chain; chain attest to sign the verdicts.
// +cache="never"
func (r *Run) SmokeTest(
	ctx context.Context,
	// Boot bootc-image-builder disks (release fidelity) instead of the images' own kernel and root filesystem.
	// +optional
	disk bool,
) (*Run, error) {
	in, err := r.smoke(ctx, "smoke", disk, "/work/out/verdicts.json")
	if err != nil {
		return nil, fail(err)
	}
	o, err := in.run(ctx)
	if err != nil {
		if o != nil && o.stdout != "" {
			return nil, fail(fmt.Errorf("%w\n%s", err, o.stdout))
		}
		return nil, fail(err)
	}
	verdicts, err := o.file(ctx, "/work/out/verdicts.json")
	if err != nil {
		return nil, fail(err)
	}
	next := *r
	next.Verdicts = verdicts
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
	in := r.Mod.cli("attest").withRegistryAuth(r.Mod).withSigningKey(key, password)
	in.fresh = true
	in.arg("--verdicts", in.withFile("verdicts.json", r.Verdicts))
	if _, whole, err := r.report(); err != nil {
		return nil, fail(err)
	} else if whole {
		in.arg("--from-report", in.withFile("report.json", r.Report))
	}
	o, err := in.run(ctx)
	if err != nil {
		return nil, fail(err)
	}
	fmt.Fprint(os.Stderr, o.stdout)
	return r, nil
}

// Ci signs every image of the run, boots and probes each in QEMU, and attests every verdict — failed ones too —
// and the run record: what main.yml runs after build-all (`imagemode ci --from-report` in the toolbox). A failed
// signature or verdict fails it; the result is in the run's result field.
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
	// The builder named in the provenance of the layers the run built (on GitHub Actions, the workflow:
	// https://github.com/${{ github.workflow_ref }}); default: the Dagger module.
	// +default="https://imagemode.dev/builders/dagger-module"
	builderId string,
) (*Run, error) {
	if _, whole, err := r.report(); err != nil || !whole {
		return nil, fail(fmt.Errorf("ci runs on a build-all run (build-all, run or candidate), not on loose images"))
	}
	in, err := r.smoke(ctx, "ci", disk, "/work/out/result.json")
	if err != nil {
		return nil, fail(err)
	}
	in.arg("--builder-id", builderId)
	in.withSigningKey(key, password)
	o, err := in.run(ctx)
	if err != nil {
		if o != nil && o.stdout != "" {
			return nil, fail(fmt.Errorf("%w\n\n%s", err, o.stdout))
		}
		return nil, fail(err)
	}
	result, err := o.file(ctx, "/work/out/result.json")
	if err != nil {
		return nil, fail(err)
	}
	var res struct {
		Verdicts json.RawMessage `json:"verdicts"`
	}
	if err := json.Unmarshal([]byte(result), &res); err != nil {
		return nil, fail(fmt.Errorf("reading the ci result: %w", err))
	}
	next := *r
	next.Result, next.Verdicts = result, string(res.Verdicts)+"\n"
	return &next, nil
}

// Promote promotes this run's commit with git tag vX.Y.Z[-pre] for --profile, re-reading and verifying everything
// from the registry exactly as the top-level promote does (see there). Returns the promotion report (JSON).
// +cache="never"
func (r *Run) Promote(
	ctx context.Context,
	// The git tag, vX.Y.Z[-pre].
	tag string,
	// Cosign private key: signs the release record. Required unless --dry-run.
	// +optional
	key *dagger.Secret,
	// Password of the key.
	// +optional
	password *dagger.Secret,
	// Id of the CI run whose signed run record must be promoted; default: the newest record on the commit's run
	// anchor.
	// +optional
	expectRun string,
	// Verify and print the package changes on the hosts, then stop: nothing moves.
	// +optional
	dryRun bool,
) (string, error) {
	rep, whole, err := r.report()
	if err != nil || !whole {
		return "", fail(fmt.Errorf("promote runs on a build-all run (build-all, run or candidate), not on loose images"))
	}
	return r.Mod.Promote(ctx, tag, []string{rep.Profile}, rep.Commit, key, password, "", false, expectRun, "", dryRun)
}

// Changes says what promoting this run would change on the hosts: for every layer, the package difference from
// the release its floating tag <repository>:<profile> names now to the run's digest, from the SBOMs signed by the
// key. Returns the JSON of `imagemode diff --from-report`.
// +cache="never"
func (r *Run) Changes(
	ctx context.Context,
	// Repository prefix of the releases hosts follow (default: the run's registry).
	// +optional
	releaseRegistry string,
) (string, error) {
	if _, whole, err := r.report(); err != nil || !whole {
		return "", fail(fmt.Errorf("changes runs on a build-all run (build-all, run or candidate), not on loose images"))
	}
	in := r.Mod.cli("diff", "--json", "--report", "/work/out/changes.json").withRegistryAuth(r.Mod)
	in.ctr = in.ctr.WithDirectory("/work/out", dag.Directory())
	in.fresh = true
	in.arg("--from-report", in.withFile("report.json", r.Report))
	if releaseRegistry != "" {
		in.arg("--release-registry", releaseRegistry)
	}
	in.withKeyFile("--public-key", "cosign.pub", r.Mod.PublicKey)
	o, err := in.run(ctx)
	if err != nil {
		return "", fail(err)
	}
	return o.file(ctx, "/work/out/changes.json")
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
	rep, _, err := r.report()
	if err != nil {
		return nil, fail(err)
	}
	return r.Mod.DiskImage(ctx, l.Ref, sshKey, l.Repository+":"+rep.Profile)
}
