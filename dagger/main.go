// imagemode builds, tests and promotes a layered family of Image Mode for RHEL (bootc) images: an SOE golden image,
// an httpd service image, a homepage application image and a MariaDB database image, each built FROM its parent's
// exact digest, signed, booted in QEMU and probed before anything is promoted.
//
// Shared configuration goes to the constructor (registry, containerfiles, profile, trust, VM settings); build-all
// returns a run on which the next stages chain:
//
//	dagger call --registry ttl.sh/imagemode-$RANDOM build-all smoke-test sign --key env:KEY table
//	dagger call --registry R candidate --commit SHA smoke-test attest --key env:KEY
//	dagger call --registry R promote --tag v1.4.2
//
// The module is thin: the layers are built by the engine (DockerBuild, Publish), and everything else — what to
// build, reuse, signatures, VMs and their probes, promotion — is the project's imagemode CLI, built from the same
// source in the engine and run in its containers with the flags CI uses on hosts.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"dagger/imagemode/internal/dagger"

	"github.com/imagemode/imagemode/ci/report"
)

// Imagemode is the pipeline for Image Mode for RHEL (bootc) image families; its fields are the configuration every
// function shares.
type Imagemode struct {
	// +private
	Registry string
	// +private
	RegistryUsername string
	// +private
	RegistryPassword *dagger.Secret
	// +private
	Dir *dagger.Directory
	// +private
	Git *dagger.GitRepository
	// +private
	Source *dagger.Directory
	// +private
	ToolboxImage string
	// +private
	Profile string
	// +private
	BaseImage string
	// +private
	BaseRegistryUsername string
	// +private
	BaseRegistryPassword *dagger.Secret
	// +private
	TrustKey *dagger.File
	// +private
	TrustedNamespace []string
	// +private
	TrustMode string
	// +private
	TrustAllowBase bool
	// +private
	PublicKey *dagger.File
	// +private
	QemuImage string
	// +private
	DiskBuilder string
	// +private
	Accel string
	// +private
	Deadline int
	// +private
	Memory int
}

func New(
	// Repository prefix images are pushed under and read from, e.g. ghcr.io/ORG/imagemode, or
	// ttl.sh/imagemode-RANDOM to try the CentOS profiles without an account. Required by the functions that use a
	// registry.
	// +optional
	registry string,
	// Username for --registry.
	// +optional
	registryUsername string,
	// Password or token for --registry.
	// +optional
	registryPassword *dagger.Secret,
	// Containerfiles directory: layers.yaml and one folder per layer.
	// +defaultPath="/containerfiles"
	dir *dagger.Directory,
	// The git checkout commits and tags are read from when --commit is not given.
	// +defaultPath="/"
	// +optional
	git *dagger.GitRepository,
	// The imagemode source the CLI is built from (go.mod, go.sum and ci/; default: this module's repository).
	// +defaultPath="/"
	// +ignore=["*", "!go.mod", "!go.sum", "!ci", "ci/**/*_test.go", "ci/**/testdata", "ci/cmd/imagemode/imagemode"]
	source *dagger.Directory,
	// A released imagemode toolbox image (the CLI at /usr/local/bin/imagemode with QEMU and mkfs.ext4), by
	// digest, to run instead of building the CLI from --source.
	// +optional
	toolboxImage string,
	// Base OS profile: rhel-9.6, rhel-10, centos-stream-9, centos-stream-10 (or any name with --base-image). The
	// CLI's --profile (Dagger 1.0's own CLI takes --profile for itself).
	// +default="centos-stream-9"
	osProfile string,
	// Build the root layer on this bootc image instead of the profile's.
	// +optional
	baseImage string,
	// Username for the base image's registry (registry.redhat.io for RHEL profiles).
	// +optional
	baseRegistryUsername string,
	// Password or token for the base image's registry.
	// +optional
	baseRegistryPassword *dagger.Secret,
	// Cosign public key the SOE's hosts require on images from --trusted-namespace: installs
	// /etc/containers/policy.json (merged with the base image's), registries.d and the key.
	// +optional
	trustKey *dagger.File,
	// Repository prefix whose images hosts must verify (repeatable; default with --trust-key: --registry).
	// +optional
	trustedNamespace []string,
	// Host policy with --trust-key: reject (every image not signed in a trusted namespace is refused) or
	// namespaces (signatures required only inside them).
	// +default="reject"
	trustMode string,
	// With --trust-mode reject, let hosts switch back to the stock base image's repository.
	// +optional
	trustAllowBase bool,
	// Cosign public key: verifies signatures, reused layers and promotions.
	// +optional
	publicKey *dagger.File,
	// Container image QEMU runs in: one with qemu-system-x86_64 and mkfs.ext4 on its PATH (default: Debian
	// bookworm-slim with qemu-system-x86, qemu-utils and e2fsprogs installed by apt, cached by the engine).
	// +optional
	qemuImage string,
	// Disk builder image: quay.io/centos-bootc/bootc-image-builder (default), registry.redhat.io/rhelN/bootc-image-builder
	// or ghcr.io/osbuild/image-builder-cli.
	// +optional
	diskBuilder string,
	// VM acceleration: auto (KVM, and TCG when KVM cannot run the guest), kvm or tcg.
	// +default="auto"
	accel string,
	// Seconds from a VM's start within which every smoke probe must pass.
	// +default=240
	deadline int,
	// Guest memory in MiB.
	// +default=1536
	memory int,
) *Imagemode {
	return &Imagemode{Registry: registry, RegistryUsername: registryUsername, RegistryPassword: registryPassword, Dir: dir, Git: git,
		Source: source, ToolboxImage: toolboxImage,
		Profile: osProfile, BaseImage: baseImage, BaseRegistryUsername: baseRegistryUsername, BaseRegistryPassword: baseRegistryPassword,
		TrustKey: trustKey, TrustedNamespace: trustedNamespace, TrustMode: trustMode, TrustAllowBase: trustAllowBase,
		PublicKey: publicKey, QemuImage: qemuImage, DiskBuilder: diskBuilder, Accel: accel, Deadline: deadline, Memory: memory}
}

// Lint checks the layer graph (unknown parent, cycle, duplicate name, missing Containerfile) and every
// Containerfile: final stage FROM ${BASE_IMAGE}, RUN bootc container lint last, nothing copied under /var.
// +check
func (m *Imagemode) Lint(ctx context.Context) (string, error) {
	o, err := m.cli("lint").withDir(m).run(ctx)
	if err != nil {
		return "", fail(err)
	}
	return o.stdout, nil
}

// Plan prints the build levels (layers of one level build in parallel), each layer's parent, and the references
// a run would write. With --resolve it asks the registry for the base image digest.
// +cache="never"
func (m *Imagemode) Plan(
	ctx context.Context,
	// Commit for the candidate tags shown.
	// +optional
	commit string,
	// Run id for the run-scoped tags shown.
	// +optional
	runID string,
	// Resolve the base image to a digest (contacts its registry).
	// +optional
	resolve bool,
) (string, error) {
	if resolve {
		if err := checkReachable("--base-image", m.BaseImage); err != nil {
			return "", fail(err)
		}
	}
	in := m.cli("plan", "--json").withDir(m).withProfile(m).withBaseAuth(m)
	in.fresh = resolve
	for _, a := range [][2]string{{"--registry", m.Registry}, {"--commit", commit}, {"--run-id", runID}} {
		if a[1] != "" {
			in.arg(a[0], a[1])
		}
	}
	if resolve {
		in.arg("--resolve")
	}
	o, err := in.run(ctx)
	if err != nil {
		return "", fail(err)
	}
	return o.stdout, nil
}

// withProfile passes --profile and --base-image.
func (in *invocation) withProfile(m *Imagemode) *invocation {
	in.arg("--profile", m.Profile)
	if m.BaseImage != "" {
		in.arg("--base-image", m.BaseImage)
	}
	return in
}

// Run loads the report (JSON) of an earlier build-all, so that the next stages run apart from the build.
func (m *Imagemode) Run(
	// The report, e.g. "$(cat report.json)".
	report string,
) (*Run, error) {
	rep, err := parseReport(report)
	if err != nil {
		return nil, fail(fmt.Errorf("--report: %w", err))
	}
	return m.newRun(rep)
}

// Candidate loads a finished run from the registry: every layer at its candidate tag sha-<commit>-<profile>,
// checked to chain parent to child.
// +cache="never"
func (m *Imagemode) Candidate(
	ctx context.Context,
	// The commit the run built (at least 12 hex digits).
	commit string,
) (*Run, error) {
	if err := checkReachable("--registry", m.Registry); err != nil {
		return nil, fail(err)
	}
	in := m.cli("candidate", "--json", "--registry", m.Registry, "--profile", m.Profile, "--commit", commit).withDir(m).withRegistryAuth(m)
	in.fresh = true
	o, err := in.run(ctx)
	if err != nil {
		return nil, fail(err)
	}
	rep, err := parseReport(o.stdout)
	if err != nil {
		return nil, fail(err)
	}
	return m.newRun(rep)
}

// Images makes a run of loose images by digest (repository@sha256:...), to sign, verify or smoke-test them.
func (m *Imagemode) Images(
	// Images by digest (repeatable).
	image []string,
) (*Run, error) {
	if len(image) == 0 {
		return nil, fail(fmt.Errorf("--image: give at least one image by digest"))
	}
	rep := &report.Report{Version: report.Version, Registry: m.Registry, Profile: m.Profile}
	for _, ref := range image {
		if !strings.Contains(ref, "@sha256:") {
			return nil, fail(fmt.Errorf("--image %q: give a digest reference (repository@sha256:...)", ref))
		}
		rep.Layers = append(rep.Layers, report.Layer{Ref: ref})
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, fail(fmt.Errorf("encoding the run: %w", err))
	}
	return &Run{Report: string(b), Mod: m}, nil
}

// Promote verifies the candidates of the commit a git tag vX.Y.Z points to — for every layer of every profile the
// revision label, signature, passing smoke verdicts and the chain to its parent, and the signed run record of the
// run that tested them — and only then moves the release tags X.Y.Z-<profile>; X.Y-<profile> and <profile> follow
// the newest complete release. Nothing held in memory is trusted: everything is read from the registry. Returns
// the promotion report (JSON).
// +cache="never"
func (m *Imagemode) Promote(
	ctx context.Context,
	// The git tag, vX.Y.Z[-pre].
	tag string,
	// Profiles to promote (repeatable; default: the constructor's --os-profile).
	// +optional
	osProfile []string,
	// Commit the tag points to (default: resolved in the checkout).
	// +optional
	commit string,
	// Cosign private key: signs the release record of every profile (the floating tags follow only signed
	// releases), and the copies in --release-registry. Required unless --dry-run.
	// +optional
	key *dagger.Secret,
	// Password of the key.
	// +optional
	password *dagger.Secret,
	// Copy the promoted digests to this repository prefix and sign them there.
	// +optional
	releaseRegistry string,
	// Move an X.Y.Z tag that already points at another digest.
	// +optional
	force bool,
	// Id of the CI run whose signed run record must be promoted (the newest run of the commit); default: the
	// newest record on the commit's run anchor.
	// +optional
	expectRun string,
	// Roll the floating tags back to this version (X.Y.Z, the version of --tag) although they point at a higher
	// one: a deliberate rollback. Without it they never move to a lower version.
	// +optional
	rollbackTo string,
	// Verify everything and print what the release would change on the hosts (package differences from the
	// releases the floating tags name now), then stop: nothing is moved, copied or signed; no key needed.
	// +optional
	dryRun bool,
) (string, error) {
	if key == nil && !dryRun {
		return "", fail(fmt.Errorf("--key is required: promotion signs a release record for every profile (or pass --dry-run)"))
	}
	if len(osProfile) == 0 {
		osProfile = []string{m.Profile}
	}
	for _, r := range [][2]string{{"--registry", m.Registry}, {"--release-registry", releaseRegistry}} {
		if err := checkReachable(r[0], r[1]); err != nil {
			return "", fail(err)
		}
	}
	if commit == "" && m.Git != nil {
		c, err := m.Git.Tag(tag).Commit(ctx)
		if err != nil {
			return "", fail(fmt.Errorf("resolving the git tag %q (pass --commit): %w", tag, err))
		}
		commit = c
	}
	in := m.cli("promote", "--tag", tag, "--registry", m.Registry, "--report", "/work/out/promotion.json").withDir(m).withRegistryAuth(m)
	in.ctr = in.ctr.WithDirectory("/work/out", dag.Directory())
	in.fresh = true
	for _, p := range osProfile {
		in.arg("--profile", p)
	}
	for _, a := range [][2]string{{"--commit", commit}, {"--release-registry", releaseRegistry}, {"--expect-run", expectRun}, {"--rollback-to", rollbackTo}} {
		if a[1] != "" {
			in.arg(a[0], a[1])
		}
	}
	if force {
		in.arg("--force")
	}
	if dryRun {
		in.arg("--dry-run")
	}
	in.withKeyFile("--public-key", "cosign.pub", m.PublicKey)
	if key != nil {
		in.withSigningKey(key, password)
	}
	o, err := in.run(ctx)
	if err != nil {
		if o != nil && o.stdout != "" {
			return "", fail(fmt.Errorf("%w\n\n%s", err, o.stdout))
		}
		return "", fail(err)
	}
	return o.file(ctx, "/work/out/promotion.json")
}

// Diff says what a bootc upgrade from one image to another changes on a host: the packages added, removed,
// upgraded and downgraded, from the images' SBOMs signed by the key (--public-key), else from SBOMs made from the
// images. Returns the JSON of `imagemode diff`.
// +cache="never"
func (m *Imagemode) Diff(
	ctx context.Context,
	// The image hosts run now (by digest or tag).
	from string,
	// The image they would move to.
	to string,
) (string, error) {
	in := m.cli("diff", "--from", from, "--to", to, "--json", "--report", "/work/out/diff.json").withRegistryAuth(m)
	in.ctr = in.ctr.WithDirectory("/work/out", dag.Directory())
	in.fresh = true
	in.withKeyFile("--public-key", "cosign.pub", m.PublicKey)
	o, err := in.run(ctx)
	if err != nil {
		return "", fail(err)
	}
	return o.file(ctx, "/work/out/diff.json")
}

// DiskImage builds a qcow2 disk of an image with bootc-image-builder (or image-builder, --disk-builder): the image
// is pulled by digest and installed following --follow (a tag, so bootc upgrade works), with bootc-user and the
// given SSH key. Export it with `... disk-image ... export --path disk.qcow2`.
// +cache="never"
func (m *Imagemode) DiskImage(
	ctx context.Context,
	// Image by digest, repository@sha256:...
	image string,
	// OpenSSH public key for bootc-user.
	sshKey string,
	// Tag reference the installed host follows for bootc upgrade, e.g. ghcr.io/acme/imagemode/homepage:centos-stream-9.
	// Default: <repository>:<profile label of the image>.
	// +optional
	follow string,
) (*dagger.File, error) {
	f, err := m.diskImage(ctx, image, follow, sshKey)
	return f, fail(err)
}

// LifecycleTest proves the bootc life cycle of a candidate: a bootc-image-builder disk of --original (the previous
// release, or the candidate's parent chain) boots in QEMU; over SSH it switches to --candidate and reboots, rolls
// back and reboots, upgrades along --channel (moved to the candidate) and reboots — checking the booted digest, the
// layer's probes and local state after every boot, and that the signature policy refuses --refuse images.
// Returns the report with the transcript of every command (JSON).
// +cache="never"
func (m *Imagemode) LifecycleTest(
	ctx context.Context,
	// The image the VM starts from, by digest.
	original string,
	// The candidate, by digest.
	candidate string,
	// Tag the installed host follows (repository:tag); moved to the candidate for the upgrade step.
	// +optional
	channel string,
	// Images the host's signature policy must refuse (repeatable).
	// +optional
	refuse []string,
	// Seconds per step (a reboot plus probes).
	// +default=300
	stepDeadline int,
) (string, error) {
	key, err := m.sshKey(ctx)
	if err != nil {
		return "", fail(err)
	}
	disk, err := m.diskImage(ctx, original, channel, key.public)
	if err != nil {
		return "", fail(err)
	}
	in := m.cli("lifecycle-test", "--disk", "/work/disk/disk.qcow2", "--original", original, "--candidate", candidate,
		"--accel", m.Accel, "--step-deadline", strconv.Itoa(stepDeadline)+"s", "--memory", "2048",
		"--report", "/work/out/lifecycle.json").withDir(m).withRegistryAuth(m).withSecret("--ssh-key-file", "ssh-key", key.private)
	in.ctr = in.ctr.WithMountedFile("/work/disk/disk.qcow2", disk).WithDirectory("/work/out", dag.Directory())
	in.fresh, in.insecure = true, true
	if channel != "" {
		in.arg("--channel", channel)
	}
	for _, r := range refuse {
		in.arg("--refuse", r)
	}
	o, err := in.run(ctx)
	if err != nil {
		if o != nil && o.stdout != "" {
			return "", fail(fmt.Errorf("%w\n%s", err, o.stdout))
		}
		return "", fail(err)
	}
	return o.file(ctx, "/work/out/lifecycle.json")
}

func (m *Imagemode) newRun(rep *report.Report) (*Run, error) {
	b, err := rep.JSON()
	if err != nil {
		return nil, fail(err)
	}
	return &Run{Report: string(b), Mod: m}, nil
}

func parseReport(s string) (*report.Report, error) { return report.Parse([]byte(s)) }

// flatError is an error message with nothing behind it to unwrap.
type flatError struct{ msg string }

func (e flatError) Error() string { return e.msg }

// fail returns an error with err's whole message and no chain: the Go SDK's module runtime reports the innermost
// error of a wrapped chain, and would show the engine's raw message instead of the project's.
func fail(err error) error {
	if err == nil {
		return nil
	}
	return flatError{msg: err.Error()}
}
