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
// The functions are thin: they pass engine objects to github.com/imagemode/imagemode/ci/engine, which runs the
// project's tested Go code.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lib "dagger.io/dagger"

	"dagger/imagemode/internal/dagger"

	"github.com/imagemode/imagemode/ci/engine"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/smoke"
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
	// Base OS profile: rhel-9.6, rhel-10, centos-stream-9, centos-stream-10 (or any name with --base-image).
	// +default="centos-stream-9"
	profile string,
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
		Profile: profile, BaseImage: baseImage, BaseRegistryUsername: baseRegistryUsername, BaseRegistryPassword: baseRegistryPassword,
		TrustKey: trustKey, TrustedNamespace: trustedNamespace, TrustMode: trustMode, TrustAllowBase: trustAllowBase,
		PublicKey: publicKey, QemuImage: qemuImage, DiskBuilder: diskBuilder, Accel: accel, Deadline: deadline, Memory: memory}
}

// Lint checks the layer graph (unknown parent, cycle, duplicate name, missing Containerfile) and every
// Containerfile: final stage FROM ${BASE_IMAGE}, RUN bootc container lint last, nothing copied under /var.
// +check
func (m *Imagemode) Lint(ctx context.Context) (string, error) {
	s, err := m.session(ctx)
	if err != nil {
		return "", err
	}
	defer s.close()
	d, err := s.dir(ctx, m.Dir)
	if err != nil {
		return "", fail(err)
	}
	if err := engine.Lint(ctx, d); err != nil {
		return "", fail(err)
	}
	return "layer graph and Containerfiles OK\n", nil
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
	s, err := m.session(ctx)
	if err != nil {
		return "", err
	}
	defer s.close()
	d, err := s.dir(ctx, m.Dir)
	if err != nil {
		return "", fail(err)
	}
	bp, err := s.secret(ctx, m.BaseRegistryPassword)
	if err != nil {
		return "", fail(err)
	}
	pl, err := engine.Plan(ctx, d, engine.PlanInput{Profile: m.Profile, BaseImage: m.BaseImage, Registry: m.Registry, Commit: commit,
		RunID: runID, Resolve: resolve, BaseRegistryAuth: engine.Credential{Username: m.BaseRegistryUsername, Password: bp}})
	if err != nil {
		return "", fail(err)
	}
	b, err := json.MarshalIndent(pl, "", "  ")
	if err != nil {
		return "", fail(fmt.Errorf("encoding the plan: %w", err))
	}
	return string(b) + "\n", nil
}

// BuildAll builds every layer in dependency order — the SOE, then httpd and database in parallel, then homepage —
// pushing each to <registry>/<layer>:build-<run-id>-<profile> and building its children FROM its exact digest.
// Candidate tags sha-<commit>-<profile> are written only when every layer succeeded. Returns the run, on which
// smoke-test, sign, attest, verify, ci, disk-image and promote chain.
// +cache="never"
func (m *Imagemode) BuildAll(
	ctx context.Context,
	// Build only these layers and their ancestors (repeatable; default: all).
	// +optional
	layer []string,
	// Git commit the images are built from (labels and candidate tags); default: HEAD of the checkout.
	// +optional
	commit string,
	// Id of this run, used in run-scoped tags (default: time and random).
	// +optional
	runID string,
	// Extra build arguments KEY=VALUE for every layer (never secrets: they are recorded in the image).
	// +optional
	buildArg []string,
	// Value of the org.opencontainers.image.source label.
	// +optional
	sourceURL string,
	// Seconds since the epoch used as the images' creation time (reproducible configs); 0: none.
	// +optional
	sourceDateEpoch int,
	// Layers of one level built at once (0: all).
	// +optional
	jobs int,
	// RHEL entitlement certificate (/etc/pki/entitlement/<serial>.pem of a registered host); RHEL profiles.
	// +optional
	entitlementCert *dagger.Secret,
	// RHEL entitlement key (/etc/pki/entitlement/<serial>-key.pem); RHEL profiles.
	// +optional
	entitlementKey *dagger.Secret,
	// RHSM CA (/etc/rhsm/ca/redhat-uep.pem); RHEL profiles.
	// +optional
	rhsmCa *dagger.Secret,
	// crypt(3) hash of bootc-user's password (mkpasswd --method=sha-512); default: the account is locked.
	// +optional
	passwordHash *dagger.Secret,
	// Reuse a signed image whose inputs (Containerfile, context, arguments, profile, parent digest) are unchanged
	// instead of building the layer: hosts then download nothing for it. Needs --public-key.
	// +default=true
	reuse bool,
	// Layers to build even when their inputs are unchanged, or "all" (picks up errata: the SOE updates packages).
	// +optional
	refresh []string,
	// Key of the HMAC under which secret inputs (the password hash) enter input digests.
	// +optional
	inputsKey *dagger.Secret,
) (*Run, error) {
	s, err := m.session(ctx)
	if err != nil {
		return nil, err
	}
	defer s.close()
	in := engine.BuildInput{Registry: m.Registry, Profile: m.Profile, BaseImage: m.BaseImage, Commit: commit, RunID: runID,
		Layers: layer, BuildArgs: buildArg, SourceURL: sourceURL, SourceDateEpoch: int64(sourceDateEpoch), Jobs: jobs,
		TrustedNamespaces: m.TrustedNamespace, TrustMode: m.TrustMode, TrustAllowBase: m.TrustAllowBase, Reuse: reuse, Refresh: refresh}
	in.RegistryAuth.Username, in.BaseRegistryAuth.Username = m.RegistryUsername, m.BaseRegistryUsername
	if in.Dir, err = s.dir(ctx, m.Dir); err != nil {
		return nil, fail(err)
	}
	if in.Git, err = s.git(ctx, m.Git); err != nil {
		return nil, fail(err)
	}
	for _, x := range []struct {
		dst *(*lib.Secret)
		src *dagger.Secret
	}{
		{&in.RegistryAuth.Password, m.RegistryPassword}, {&in.BaseRegistryAuth.Password, m.BaseRegistryPassword},
		{&in.EntitlementCert, entitlementCert}, {&in.EntitlementKey, entitlementKey}, {&in.RHSMCA, rhsmCa},
		{&in.PasswordHash, passwordHash}, {&in.InputsKey, inputsKey},
	} {
		if *x.dst, err = s.secret(ctx, x.src); err != nil {
			return nil, fail(err)
		}
	}
	if in.TrustKey, err = s.file(ctx, m.TrustKey); err != nil {
		return nil, fail(err)
	}
	if in.PublicKey, err = s.file(ctx, m.PublicKey); err != nil {
		return nil, fail(err)
	}
	rep, err := engine.BuildAll(ctx, s.c, in, os.Stderr)
	if err != nil {
		if rep != nil {
			return nil, fail(fmt.Errorf("%w\n\n%s", err, rep.Table()))
		}
		return nil, fail(err)
	}
	return m.newRun(rep)
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
	s, err := m.session(ctx)
	if err != nil {
		return nil, err
	}
	defer s.close()
	d, err := s.dir(ctx, m.Dir)
	if err != nil {
		return nil, fail(err)
	}
	rp, err := s.secret(ctx, m.RegistryPassword)
	if err != nil {
		return nil, fail(err)
	}
	rep, err := engine.Candidate(ctx, d, m.Registry, m.Profile, commit, engine.Credential{Username: m.RegistryUsername, Password: rp})
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
		rep.Layers = append(rep.Layers, report.Layer{Ref: ref})
	}
	return &Run{Report: mustJSON(rep), Mod: m}, nil
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
	// Profiles to promote (repeatable; default: --profile).
	// +optional
	profile []string,
	// Commit the tag points to (default: resolved in the checkout).
	// +optional
	commit string,
	// Copy the promoted digests to this repository prefix and sign them there (needs --key).
	// +optional
	releaseRegistry string,
	// Cosign private key (only with --release-registry).
	// +optional
	key *dagger.Secret,
	// Password of the key.
	// +optional
	password *dagger.Secret,
	// Move an X.Y.Z tag that already points at another digest.
	// +optional
	force bool,
	// Id of the CI run whose signed run record must be promoted (the newest run of the commit); default: the
	// newest record in the registry.
	// +optional
	expectRun string,
) (string, error) {
	if len(profile) == 0 {
		profile = []string{m.Profile}
	}
	s, si, err := m.begin(ctx, key, password)
	if err != nil {
		return "", err
	}
	defer s.close()
	in := engine.PromoteInput{SignInput: si, Tag: tag, Commit: commit, ReleaseRegistry: releaseRegistry, Profiles: profile, Force: force, ExpectRun: expectRun}
	if in.Dir, err = s.dir(ctx, m.Dir); err != nil {
		return "", fail(err)
	}
	if in.Git, err = s.git(ctx, m.Git); err != nil {
		return "", fail(err)
	}
	rep, err := engine.Promote(ctx, in, os.Stderr)
	if rep != nil {
		out, jerr := rep.JSON()
		if err != nil {
			return "", fail(fmt.Errorf("%w\n\n%s", err, rep.Text()))
		}
		return string(out), fail(jerr)
	}
	return "", fail(err)
}

// DiskImage builds a qcow2 disk of an image with bootc-image-builder (or image-builder, --disk-builder): the image
// is pulled by digest and installed following --follow (a tag, so bootc upgrade works), with bootc-user and the
// given SSH key. Export it with `... disk-image ... export --path disk.qcow2`.
// +cache="never"
func (m *Imagemode) DiskImage(
	ctx context.Context,
	// Image by digest, repository@sha256:...
	image string,
	// Tag reference the installed host follows for bootc upgrade, e.g. ghcr.io/acme/imagemode/homepage:centos-stream-9.
	follow string,
	// OpenSSH public key for bootc-user.
	sshKey string,
) (*dagger.File, error) {
	s, err := m.session(ctx)
	if err != nil {
		return nil, err
	}
	defer s.close()
	rp, err := s.secret(ctx, m.RegistryPassword)
	if err != nil {
		return nil, fail(err)
	}
	f, err := engine.DiskImage(ctx, s.c, engine.DiskInput{Image: image, Follow: follow, Builder: m.DiskBuilder, SSHKey: sshKey,
		RegistryAuth: engine.Credential{Username: m.RegistryUsername, Password: rp}})
	if err != nil {
		return nil, fail(err)
	}
	id, err := f.ID(ctx)
	if err != nil {
		return nil, fail(fmt.Errorf("reading the disk's id: %w", err))
	}
	return dag.LoadFileFromID(dagger.FileID(id)), nil
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
	s, err := m.session(ctx)
	if err != nil {
		return "", err
	}
	defer s.close()
	in := engine.LifecycleInput{Original: original, Candidate: candidate, Channel: channel, Refused: refuse, DiskBuilder: m.DiskBuilder,
		QEMUImage: m.QemuImage, Accel: m.Accel, StepDeadline: time.Duration(stepDeadline) * time.Second,
		RegistryAuth: engine.Credential{Username: m.RegistryUsername}}
	if in.Dir, err = s.dir(ctx, m.Dir); err != nil {
		return "", fail(err)
	}
	if in.RegistryAuth.Password, err = s.secret(ctx, m.RegistryPassword); err != nil {
		return "", fail(err)
	}
	rep, err := engine.Lifecycle(ctx, s.c, in, os.Stderr)
	if err != nil {
		return "", fail(err)
	}
	out, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return "", fail(fmt.Errorf("encoding the report: %w", err))
	}
	if rep.Verdict != smoke.Pass {
		return "", fail(fmt.Errorf("life-cycle test FAILED: %s\n%s", rep.Reason, out))
	}
	return string(out) + "\n", nil
}

// begin opens the engine session and the registry access (with key and password when given) of a function.
func (m *Imagemode) begin(ctx context.Context, key, password *dagger.Secret) (*session, engine.SignInput, error) {
	s, err := m.session(ctx)
	if err != nil {
		return nil, engine.SignInput{}, err
	}
	si, err := m.signInput(ctx, s, key, password)
	if err != nil {
		s.close()
		return nil, engine.SignInput{}, fail(err)
	}
	return s, si, nil
}

// signInput is the module's registry access plus a key (optional) and the public key.
func (m *Imagemode) signInput(ctx context.Context, s *session, key, password *dagger.Secret) (engine.SignInput, error) {
	in := engine.SignInput{Registry: m.Registry, RegistryAuth: engine.Credential{Username: m.RegistryUsername}}
	var err error
	if in.Key, err = s.secret(ctx, key); err != nil {
		return in, err
	}
	if in.Password, err = s.secret(ctx, password); err != nil {
		return in, err
	}
	if in.RegistryAuth.Password, err = s.secret(ctx, m.RegistryPassword); err != nil {
		return in, err
	}
	if in.PublicKey, err = s.file(ctx, m.PublicKey); err != nil {
		return in, err
	}
	return in, nil
}

func (m *Imagemode) newRun(rep *report.Report) (*Run, error) {
	b, err := rep.JSON()
	if err != nil {
		return nil, fail(err)
	}
	return &Run{Report: string(b), Mod: m}, nil
}

func parseReport(s string) (*report.Report, error) { return report.Parse([]byte(s)) }

func mustJSON(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // report values always encode
	}
	return string(b)
}

// fail keeps the project's message whole (engine.Flatten).
func fail(err error) error { return engine.Flatten(err) }
