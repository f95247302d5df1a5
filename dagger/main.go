// imagemode builds, tests and promotes a layered family of Image Mode for RHEL (bootc) images: an SOE golden image,
// an httpd service image, a homepage application image and a MariaDB database image, each built FROM its parent's
// exact digest.
//
// These functions are thin shims: they connect to the engine session, convert their arguments by ID and delegate
// to github.com/imagemode/imagemode/ci/engine, where the logic lives and is tested.
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
)

// Imagemode is the pipeline for Image Mode for RHEL (bootc) image families.
type Imagemode struct{}

// BuildResult is the outcome of a build: the run report, for people and for the next stages.
type BuildResult struct {
	// The run report as JSON: every layer's repository, digest, parent digest, tags and duration.
	Report string
	// The run report as a table.
	Table string
}

// connect joins the caller's engine session with the dagger.io/dagger library that ci/engine is written against.
func connect(ctx context.Context) (*lib.Client, error) {
	c, err := lib.Connect(ctx, lib.WithLogOutput(os.Stderr))
	if err != nil {
		return nil, engine.Flatten(fmt.Errorf("connecting to the engine session: %w", err))
	}
	return c, nil
}

func loadDir(ctx context.Context, c *lib.Client, d *dagger.Directory) (*lib.Directory, error) {
	id, err := d.ID(ctx)
	if err != nil {
		return nil, engine.Flatten(fmt.Errorf("reading a directory id: %w", err))
	}
	return c.LoadDirectoryFromID(lib.DirectoryID(id)), nil
}

func loadSecret(ctx context.Context, c *lib.Client, s *dagger.Secret) (*lib.Secret, error) {
	if s == nil {
		return nil, nil
	}
	id, err := s.ID(ctx)
	if err != nil {
		return nil, engine.Flatten(fmt.Errorf("reading a secret id: %w", err))
	}
	return c.LoadSecretFromID(lib.SecretID(id)), nil
}

func loadFile(ctx context.Context, c *lib.Client, f *dagger.File) (*lib.File, error) {
	if f == nil {
		return nil, nil
	}
	id, err := f.ID(ctx)
	if err != nil {
		return nil, engine.Flatten(fmt.Errorf("reading a file id: %w", err))
	}
	return c.LoadFileFromID(lib.FileID(id)), nil
}

func loadGit(ctx context.Context, c *lib.Client, g *dagger.GitRepository) (*lib.GitRepository, error) {
	if g == nil {
		return nil, nil
	}
	id, err := g.ID(ctx)
	if err != nil {
		return nil, engine.Flatten(fmt.Errorf("reading a git repository id: %w", err))
	}
	return c.LoadGitRepositoryFromID(lib.GitRepositoryID(id)), nil
}

// Lint checks the layer graph (unknown parent, cycle, duplicate name, missing Containerfile) and every
// Containerfile: final stage FROM ${BASE_IMAGE}, RUN bootc container lint last, nothing copied under /var.
func (m *Imagemode) Lint(
	ctx context.Context,
	// Containerfiles directory: layers.yaml and one folder per layer.
	// +defaultPath="/containerfiles"
	dir *dagger.Directory,
) (string, error) {
	c, err := connect(ctx)
	if err != nil {
		return "", engine.Flatten(err)
	}
	defer c.Close()
	d, err := loadDir(ctx, c, dir)
	if err != nil {
		return "", engine.Flatten(err)
	}
	if err := engine.Lint(ctx, d); err != nil {
		return "", engine.Flatten(err)
	}
	return "layer graph and Containerfiles OK\n", nil
}

// Plan prints the build levels (layers of one level build in parallel), each layer's parent, and the repositories
// a run would push to. With --resolve it asks the registry for the base image digest.
// +cache="never"
func (m *Imagemode) Plan(
	ctx context.Context,
	// Containerfiles directory: layers.yaml and one folder per layer.
	// +defaultPath="/containerfiles"
	dir *dagger.Directory,
	// Base OS profile: rhel-9.6, rhel-10, centos-stream-9, centos-stream-10 (or any name with --base-image).
	// +default="centos-stream-9"
	profile string,
	// Build the root layer on this bootc image instead of the profile's.
	// +optional
	baseImage string,
	// Repository prefix layers are pushed under, e.g. ghcr.io/ORG/imagemode.
	// +optional
	registry string,
	// Commit for the candidate tags shown.
	// +optional
	commit string,
	// Run id for the run-scoped tags shown.
	// +optional
	runID string,
	// Resolve the base image to a digest (contacts its registry).
	// +optional
	resolve bool,
	// Username for the base image's registry (registry.redhat.io for RHEL profiles).
	// +optional
	baseRegistryUsername string,
	// Password or token for the base image's registry.
	// +optional
	baseRegistryPassword *dagger.Secret,
) (string, error) {
	c, err := connect(ctx)
	if err != nil {
		return "", engine.Flatten(err)
	}
	defer c.Close()
	d, err := loadDir(ctx, c, dir)
	if err != nil {
		return "", engine.Flatten(err)
	}
	bp, err := loadSecret(ctx, c, baseRegistryPassword)
	if err != nil {
		return "", engine.Flatten(err)
	}
	pl, err := engine.Plan(ctx, d, engine.PlanInput{Profile: profile, BaseImage: baseImage, Registry: registry, Commit: commit, RunID: runID,
		Resolve: resolve, BaseRegistryAuth: engine.Credential{Username: baseRegistryUsername, Password: bp}})
	if err != nil {
		return "", engine.Flatten(err)
	}
	b, err := json.MarshalIndent(pl, "", "  ")
	if err != nil {
		return "", engine.Flatten(fmt.Errorf("encoding the plan: %w", err))
	}
	return string(b) + "\n", nil
}

// BuildAll builds every layer in dependency order — the SOE, then httpd and database in parallel, then homepage —
// pushing each to <registry>/<layer>:build-<run-id>-<profile> and building its children FROM its exact digest.
// Candidate tags sha-<commit>-<profile> are written only when every layer succeeded.
// +cache="never"
func (m *Imagemode) BuildAll(
	ctx context.Context,
	// Repository prefix layers are pushed under, e.g. ghcr.io/ORG/imagemode, or ttl.sh/imagemode-RANDOM to try
	// the CentOS profiles without an account.
	registry string,
	// Containerfiles directory: layers.yaml and one folder per layer.
	// +defaultPath="/containerfiles"
	dir *dagger.Directory,
	// The git checkout the commit is read from when --commit is not given.
	// +defaultPath="/"
	// +optional
	git *dagger.GitRepository,
	// Base OS profile: rhel-9.6, rhel-10, centos-stream-9, centos-stream-10 (or any name with --base-image).
	// +default="centos-stream-9"
	profile string,
	// Build the root layer on this bootc image instead of the profile's.
	// +optional
	baseImage string,
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
	// Seconds since the epoch used for timestamps in the built layers (reproducible layers); 0: none.
	// +optional
	sourceDateEpoch int,
	// Layers of one level built at once (0: all).
	// +optional
	jobs int,
	// Username for --registry.
	// +optional
	registryUsername string,
	// Password or token for --registry.
	// +optional
	registryPassword *dagger.Secret,
	// Username for the base image's registry (registry.redhat.io for RHEL profiles).
	// +optional
	baseRegistryUsername string,
	// Password or token for the base image's registry.
	// +optional
	baseRegistryPassword *dagger.Secret,
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
	// Reuse a signed image whose inputs (Containerfile, context, arguments, profile, parent digest) are unchanged
	// instead of building the layer: hosts then download nothing for it. Needs --public-key.
	// +default=true
	reuse bool,
	// Cosign public key reused images must be signed with.
	// +optional
	publicKey *dagger.File,
	// Layers to build even when their inputs are unchanged, or "all" (picks up errata: the SOE updates packages).
	// +optional
	refresh []string,
	// Key of the HMAC under which secret inputs (the password hash) enter input digests.
	// +optional
	inputsKey *dagger.Secret,
) (*BuildResult, error) {
	return m.build(ctx, nil, registry, dir, git, profile, baseImage, commit, runID, buildArg, sourceURL, sourceDateEpoch, jobs,
		registryUsername, registryPassword, baseRegistryUsername, baseRegistryPassword, entitlementCert, entitlementKey, rhsmCa, passwordHash,
		trustKey, trustedNamespace, trustMode, trustAllowBase, reuseOptions{reuse: reuse, publicKey: publicKey, refresh: refresh, inputsKey: inputsKey})
}

// reuseOptions are build-all's reuse arguments.
type reuseOptions struct {
	reuse     bool
	publicKey *dagger.File
	refresh   []string
	inputsKey *dagger.Secret
}

// Build builds one layer and its ancestors (e.g. homepage builds soe, httpd and homepage), like build-all.
// +cache="never"
func (m *Imagemode) Build(
	ctx context.Context,
	// The layer to build.
	layer string,
	// Repository prefix layers are pushed under, e.g. ghcr.io/ORG/imagemode.
	registry string,
	// Containerfiles directory: layers.yaml and one folder per layer.
	// +defaultPath="/containerfiles"
	dir *dagger.Directory,
	// The git checkout the commit is read from when --commit is not given.
	// +defaultPath="/"
	// +optional
	git *dagger.GitRepository,
	// Base OS profile: rhel-9.6, rhel-10, centos-stream-9, centos-stream-10 (or any name with --base-image).
	// +default="centos-stream-9"
	profile string,
	// Build the root layer on this bootc image instead of the profile's.
	// +optional
	baseImage string,
	// Git commit the images are built from; default: HEAD of the checkout.
	// +optional
	commit string,
	// Id of this run, used in run-scoped tags (default: time and random).
	// +optional
	runID string,
	// Extra build arguments KEY=VALUE for every layer.
	// +optional
	buildArg []string,
	// Username for --registry.
	// +optional
	registryUsername string,
	// Password or token for --registry.
	// +optional
	registryPassword *dagger.Secret,
	// Username for the base image's registry.
	// +optional
	baseRegistryUsername string,
	// Password or token for the base image's registry.
	// +optional
	baseRegistryPassword *dagger.Secret,
	// RHEL entitlement certificate; RHEL profiles.
	// +optional
	entitlementCert *dagger.Secret,
	// RHEL entitlement key; RHEL profiles.
	// +optional
	entitlementKey *dagger.Secret,
	// RHSM CA; RHEL profiles.
	// +optional
	rhsmCa *dagger.Secret,
	// crypt(3) hash of bootc-user's password; default: the account is locked.
	// +optional
	passwordHash *dagger.Secret,
	// Cosign public key the SOE's hosts require (see build-all).
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
	// Value of the org.opencontainers.image.source label.
	// +optional
	sourceURL string,
	// Seconds since the epoch used as the images' creation time (reproducible configs); 0: none.
	// +optional
	sourceDateEpoch int,
	// Layers of one level built at once (0: all).
	// +optional
	jobs int,
	// Reuse a signed image whose inputs are unchanged instead of building the layer. Needs --public-key.
	// +default=true
	reuse bool,
	// Cosign public key reused images must be signed with.
	// +optional
	publicKey *dagger.File,
	// Layers to build even when their inputs are unchanged, or "all".
	// +optional
	refresh []string,
	// Key of the HMAC under which secret inputs (the password hash) enter input digests.
	// +optional
	inputsKey *dagger.Secret,
) (*BuildResult, error) {
	return m.build(ctx, []string{layer}, registry, dir, git, profile, baseImage, commit, runID, buildArg, sourceURL, sourceDateEpoch, jobs,
		registryUsername, registryPassword, baseRegistryUsername, baseRegistryPassword, entitlementCert, entitlementKey, rhsmCa, passwordHash,
		trustKey, trustedNamespace, trustMode, trustAllowBase, reuseOptions{reuse: reuse, publicKey: publicKey, refresh: refresh, inputsKey: inputsKey})
}

func (m *Imagemode) build(ctx context.Context, only []string, registry string, dir *dagger.Directory, git *dagger.GitRepository,
	profile, baseImage, commit, runID string, buildArg []string, sourceURL string, sourceDateEpoch, jobs int,
	registryUsername string, registryPassword *dagger.Secret, baseRegistryUsername string, baseRegistryPassword *dagger.Secret,
	entitlementCert, entitlementKey, rhsmCa, passwordHash *dagger.Secret,
	trustKey *dagger.File, trustedNamespace []string, trustMode string, trustAllowBase bool, ro reuseOptions,
) (*BuildResult, error) {
	c, err := connect(ctx)
	if err != nil {
		return nil, engine.Flatten(err)
	}
	defer c.Close()
	in := engine.BuildInput{
		Registry: registry, Profile: profile, BaseImage: baseImage, Commit: commit, RunID: runID,
		Layers: only, BuildArgs: buildArg, SourceURL: sourceURL, SourceDateEpoch: int64(sourceDateEpoch), Jobs: jobs,
	}
	if in.Dir, err = loadDir(ctx, c, dir); err != nil {
		return nil, engine.Flatten(err)
	}
	if in.Git, err = loadGit(ctx, c, git); err != nil {
		return nil, engine.Flatten(err)
	}
	secrets := []struct {
		dst *(*lib.Secret)
		src *dagger.Secret
	}{
		{&in.RegistryAuth.Password, registryPassword},
		{&in.BaseRegistryAuth.Password, baseRegistryPassword},
		{&in.EntitlementCert, entitlementCert},
		{&in.EntitlementKey, entitlementKey},
		{&in.RHSMCA, rhsmCa},
		{&in.PasswordHash, passwordHash},
	}
	for _, s := range secrets {
		if *s.dst, err = loadSecret(ctx, c, s.src); err != nil {
			return nil, engine.Flatten(err)
		}
	}
	in.RegistryAuth.Username, in.BaseRegistryAuth.Username = registryUsername, baseRegistryUsername
	if in.TrustKey, err = loadFile(ctx, c, trustKey); err != nil {
		return nil, engine.Flatten(err)
	}
	in.TrustedNamespaces, in.TrustMode, in.TrustAllowBase = trustedNamespace, trustMode, trustAllowBase
	in.Reuse, in.Refresh = ro.reuse, ro.refresh
	if in.PublicKey, err = loadFile(ctx, c, ro.publicKey); err != nil {
		return nil, engine.Flatten(err)
	}
	if in.InputsKey, err = loadSecret(ctx, c, ro.inputsKey); err != nil {
		return nil, engine.Flatten(err)
	}
	rep, err := engine.BuildAll(ctx, c, in, os.Stderr)
	if err != nil {
		if rep != nil {
			return nil, engine.Flatten(fmt.Errorf("%w\n\n%s", err, rep.Table()))
		}
		return nil, engine.Flatten(err)
	}
	return result(rep)
}

func result(rep *report.Report) (*BuildResult, error) {
	b, err := rep.JSON()
	if err != nil {
		return nil, engine.Flatten(err)
	}
	return &BuildResult{Report: string(b), Table: rep.Table()}, nil
}

// signInput converts the signing arguments shared by sign, verify and promote.
func signInput(ctx context.Context, c *lib.Client, images []string, rep string, key, password *dagger.Secret, publicKey *dagger.File,
	registryUsername string, registryPassword *dagger.Secret) (engine.SignInput, error) {
	in := engine.SignInput{Images: images, Report: rep, RegistryAuth: engine.Credential{Username: registryUsername}}
	var err error
	if in.Key, err = loadSecret(ctx, c, key); err != nil {
		return in, engine.Flatten(err)
	}
	if in.Password, err = loadSecret(ctx, c, password); err != nil {
		return in, engine.Flatten(err)
	}
	if in.RegistryAuth.Password, err = loadSecret(ctx, c, registryPassword); err != nil {
		return in, engine.Flatten(err)
	}
	if in.PublicKey, err = loadFile(ctx, c, publicKey); err != nil {
		return in, engine.Flatten(err)
	}
	return in, nil
}

// Sign signs images by digest with a cosign key, in the sha256-<digest>.sig format podman, skopeo and bootc
// verify. No transparency-log upload.
// +cache="never"
func (m *Imagemode) Sign(
	ctx context.Context,
	// Cosign private key.
	key *dagger.Secret,
	// Password of the key.
	// +optional
	password *dagger.Secret,
	// Images by digest, repository@sha256:... (repeatable).
	// +optional
	image []string,
	// A build-all report (its JSON): every layer of it is signed.
	// +optional
	report string,
	// Username for the images' registry.
	// +optional
	registryUsername string,
	// Password or token for the images' registry.
	// +optional
	registryPassword *dagger.Secret,
) (string, error) {
	c, err := connect(ctx)
	if err != nil {
		return "", engine.Flatten(err)
	}
	defer c.Close()
	in, err := signInput(ctx, c, image, report, key, password, nil, registryUsername, registryPassword)
	if err != nil {
		return "", engine.Flatten(err)
	}
	out, err := engine.Sign(ctx, in)
	return out, engine.Flatten(err)
}

// Verify checks that images carry a signature by the key, made for that digest in that repository.
// +cache="never"
func (m *Imagemode) Verify(
	ctx context.Context,
	// Cosign public key.
	publicKey *dagger.File,
	// Images by digest, repository@sha256:... (repeatable).
	// +optional
	image []string,
	// A build-all report (its JSON): every layer of it is verified.
	// +optional
	report string,
	// Username for the images' registry.
	// +optional
	registryUsername string,
	// Password or token for the images' registry.
	// +optional
	registryPassword *dagger.Secret,
) (string, error) {
	c, err := connect(ctx)
	if err != nil {
		return "", engine.Flatten(err)
	}
	defer c.Close()
	in, err := signInput(ctx, c, image, report, nil, nil, publicKey, registryUsername, registryPassword)
	if err != nil {
		return "", engine.Flatten(err)
	}
	out, err := engine.Verify(ctx, in)
	return out, engine.Flatten(err)
}

// Promote verifies the candidates of the commit a git tag vX.Y.Z points to — every layer of every profile:
// revision label, signature, a passing smoke-test attestation for that digest, the chain to its parent — and only
// then moves the release tags X.Y.Z-<profile>, X.Y-<profile> and <profile>. Returns the promotion report (JSON).
// +cache="never"
func (m *Imagemode) Promote(
	ctx context.Context,
	// The git tag, vX.Y.Z[-pre].
	tag string,
	// Candidates' repository prefix.
	registry string,
	// Profiles to promote (repeatable).
	profile []string,
	// Cosign public key the candidates are signed with.
	publicKey *dagger.File,
	// Containerfiles directory: the layers to promote.
	// +defaultPath="/containerfiles"
	dir *dagger.Directory,
	// The git checkout the tag is resolved in when --commit is not given.
	// +defaultPath="/"
	// +optional
	git *dagger.GitRepository,
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
	// Username for the registry.
	// +optional
	registryUsername string,
	// Password or token for the registry.
	// +optional
	registryPassword *dagger.Secret,
) (string, error) {
	c, err := connect(ctx)
	if err != nil {
		return "", engine.Flatten(err)
	}
	defer c.Close()
	si, err := signInput(ctx, c, nil, "", key, password, publicKey, registryUsername, registryPassword)
	if err != nil {
		return "", engine.Flatten(err)
	}
	si.Registry = registry
	in := engine.PromoteInput{SignInput: si, Tag: tag, Commit: commit, ReleaseRegistry: releaseRegistry, Profiles: profile, Force: force, ExpectRun: expectRun}
	if in.Dir, err = loadDir(ctx, c, dir); err != nil {
		return "", engine.Flatten(err)
	}
	if in.Git, err = loadGit(ctx, c, git); err != nil {
		return "", engine.Flatten(err)
	}
	rep, err := engine.Promote(ctx, in, os.Stderr)
	if rep != nil {
		out, jerr := rep.JSON()
		if err != nil {
			return "", engine.Flatten(fmt.Errorf("%w\n\n%s", err, rep.Text()))
		}
		return string(out), engine.Flatten(jerr)
	}
	return "", engine.Flatten(err)
}

// SmokeTest boots images in QEMU (in a service container) and probes them: the guest reaches multi-user, plus the
// probes layers.yaml declares (HTTP pages, MariaDB round trip); in disk mode also bootc status shows the tested
// digest booted and no unit failed. Returns the verdicts (JSON); with --key each verdict is attested, and
// promotion requires a passing one. A failing verdict fails the function.
// +cache="never"
func (m *Imagemode) SmokeTest(
	ctx context.Context,
	// Images by digest, repository@sha256:... (repeatable).
	// +optional
	image []string,
	// A build-all report (its JSON): every layer of it is tested.
	// +optional
	report string,
	// Containerfiles directory: the layers' probes.
	// +defaultPath="/containerfiles"
	dir *dagger.Directory,
	// Boot a bootc-image-builder disk (release fidelity) instead of the image's own kernel and root filesystem.
	// +optional
	disk bool,
	// Disk builder image: quay.io/centos-bootc/bootc-image-builder, registry.redhat.io/rhelN/bootc-image-builder
	// or ghcr.io/osbuild/image-builder-cli.
	// +optional
	diskBuilder string,
	// Container image QEMU runs in: one with qemu-system-x86_64 and mkfs.ext4 on its PATH (default: Debian
	// bookworm-slim with qemu-system-x86, qemu-utils and e2fsprogs installed by apt, cached by the engine).
	// +optional
	qemuImage string,
	// Acceleration: auto (KVM, and TCG when KVM cannot run the guest), kvm or tcg.
	// +default="auto"
	accel string,
	// Seconds from the VM's start within which every probe must pass.
	// +default=240
	deadline int,
	// Guest memory in MiB.
	// +default=1536
	memory int,
	// Cosign private key: attest each verdict.
	// +optional
	key *dagger.Secret,
	// Password of the key.
	// +optional
	password *dagger.Secret,
	// Username for the images' registry.
	// +optional
	registryUsername string,
	// Password or token for the images' registry.
	// +optional
	registryPassword *dagger.Secret,
) (string, error) {
	c, err := connect(ctx)
	if err != nil {
		return "", engine.Flatten(err)
	}
	defer c.Close()
	si, err := signInput(ctx, c, image, report, key, password, nil, registryUsername, registryPassword)
	if err != nil {
		return "", engine.Flatten(err)
	}
	in := engine.SmokeInput{SignInput: si, Disk: disk, DiskBuilder: diskBuilder, QEMUImage: qemuImage, Accel: accel,
		Deadline: time.Duration(deadline) * time.Second, MemoryMB: memory}
	if in.Dir, err = loadDir(ctx, c, dir); err != nil {
		return "", engine.Flatten(err)
	}
	verdicts, err := engine.SmokeTest(ctx, c, in, os.Stderr)
	if err != nil {
		return "", engine.Flatten(err)
	}
	out, err := json.MarshalIndent(verdicts, "", "  ")
	if err != nil {
		return "", engine.Flatten(fmt.Errorf("encoding the verdicts: %w", err))
	}
	for _, v := range verdicts {
		if v.Verdict != "pass" {
			return "", engine.Flatten(fmt.Errorf("smoke test FAILED for %s: %s\n%s", v.Layer, v.Reason, out))
		}
	}
	return string(out) + "\n", nil
}

// DiskImage builds a qcow2 disk of an image with bootc-image-builder (or image-builder): the image is pulled by
// digest into the builder's containers-storage and installed following --follow (a tag, so bootc upgrade works),
// with bootc-user and the given SSH key. Export it with `dagger call disk-image ... export --path disk.qcow2`.
// +cache="never"
func (m *Imagemode) DiskImage(
	ctx context.Context,
	// Image by digest, repository@sha256:...
	image string,
	// Tag reference the installed host follows for bootc upgrade, e.g. ghcr.io/acme/imagemode/homepage:centos-stream-9.
	follow string,
	// OpenSSH public key for bootc-user.
	sshKey string,
	// Disk builder image.
	// +default="quay.io/centos-bootc/bootc-image-builder:latest"
	diskBuilder string,
	// Username for the image's registry.
	// +optional
	registryUsername string,
	// Password or token for the image's registry.
	// +optional
	registryPassword *dagger.Secret,
) (*dagger.File, error) {
	c, err := connect(ctx)
	if err != nil {
		return nil, engine.Flatten(err)
	}
	defer c.Close()
	rp, err := loadSecret(ctx, c, registryPassword)
	if err != nil {
		return nil, engine.Flatten(err)
	}
	f, err := engine.DiskImage(ctx, c, engine.DiskInput{Image: image, Follow: follow, Builder: diskBuilder, SSHKey: sshKey,
		RegistryAuth: engine.Credential{Username: registryUsername, Password: rp}})
	if err != nil {
		return nil, engine.Flatten(err)
	}
	id, err := f.ID(ctx)
	if err != nil {
		return nil, engine.Flatten(fmt.Errorf("reading the disk's id: %w", err))
	}
	return dag.LoadFileFromID(dagger.FileID(id)), nil
}

// Ci is the end-to-end job main.yml and a laptop run: build-all, sign every layer, boot every layer in QEMU and
// probe it (ephemeral; --disk boots bootc-image-builder disks), attest every verdict. Returns the report (JSON); a
// failed build, signature or verdict fails the function.
// +cache="never"
func (m *Imagemode) Ci(
	ctx context.Context,
	// Repository prefix layers are pushed under, e.g. ghcr.io/ORG/imagemode.
	registry string,
	// Cosign private key: signs the layers and their verdicts.
	key *dagger.Secret,
	// Containerfiles directory: layers.yaml and one folder per layer.
	// +defaultPath="/containerfiles"
	dir *dagger.Directory,
	// The git checkout the commit is read from when --commit is not given.
	// +defaultPath="/"
	// +optional
	git *dagger.GitRepository,
	// Password of the key.
	// +optional
	password *dagger.Secret,
	// Base OS profile: rhel-9.6, rhel-10, centos-stream-9, centos-stream-10 (or any name with --base-image).
	// +default="centos-stream-9"
	profile string,
	// Build the root layer on this bootc image instead of the profile's.
	// +optional
	baseImage string,
	// Git commit the images are built from; default: HEAD of the checkout.
	// +optional
	commit string,
	// Id of this run, used in run-scoped tags (default: time and random).
	// +optional
	runID string,
	// Username for --registry.
	// +optional
	registryUsername string,
	// Password or token for --registry.
	// +optional
	registryPassword *dagger.Secret,
	// Username for the base image's registry (registry.redhat.io for RHEL profiles).
	// +optional
	baseRegistryUsername string,
	// Password or token for the base image's registry.
	// +optional
	baseRegistryPassword *dagger.Secret,
	// RHEL entitlement certificate; RHEL profiles.
	// +optional
	entitlementCert *dagger.Secret,
	// RHEL entitlement key; RHEL profiles.
	// +optional
	entitlementKey *dagger.Secret,
	// RHSM CA; RHEL profiles.
	// +optional
	rhsmCa *dagger.Secret,
	// Cosign public key the SOE's hosts require on images from --trusted-namespace (default namespace: --registry).
	// +optional
	trustKey *dagger.File,
	// Repository prefix whose images hosts must verify (repeatable).
	// +optional
	trustedNamespace []string,
	// Host policy with --trust-key: reject (every image not signed in a trusted namespace is refused) or
	// namespaces (signatures required only inside them).
	// +default="reject"
	trustMode string,
	// With --trust-mode reject, let hosts switch back to the stock base image's repository.
	// +optional
	trustAllowBase bool,
	// Cosign public key reused (unchanged) layers must be signed with; without it nothing is reused.
	// +optional
	publicKey *dagger.File,
	// Layers to build even when their inputs are unchanged, or "all".
	// +optional
	refresh []string,
	// Reuse a signed image whose inputs are unchanged instead of building the layer (needs --public-key).
	// +default=true
	reuse bool,
	// Key of the HMAC under which secret inputs (the password hash) enter input digests.
	// +optional
	inputsKey *dagger.Secret,
	// crypt(3) hash of bootc-user's password (mkpasswd --method=sha-512); default: the account is locked.
	// +optional
	passwordHash *dagger.Secret,
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
	// Boot bootc-image-builder disks (release fidelity; SSH probes of bootc status and failed units) instead of
	// the images' own kernel and root filesystem.
	// +optional
	disk bool,
	// Disk builder image.
	// +optional
	diskBuilder string,
	// Container image QEMU runs in (see smoke-test).
	// +optional
	qemuImage string,
	// VM acceleration: auto, kvm or tcg.
	// +default="auto"
	accel string,
	// Seconds from a VM's start within which every probe must pass.
	// +default=240
	deadline int,
	// Guest memory in MiB.
	// +default=1536
	memory int,
) (string, error) {
	c, err := connect(ctx)
	if err != nil {
		return "", engine.Flatten(err)
	}
	defer c.Close()
	in := engine.CIInput{Build: engine.BuildInput{Registry: registry, Profile: profile, BaseImage: baseImage, Commit: commit,
		RunID: runID, TrustedNamespaces: trustedNamespace, TrustMode: trustMode, TrustAllowBase: trustAllowBase, Reuse: reuse, Refresh: refresh, BuildArgs: buildArg, SourceURL: sourceURL,
		SourceDateEpoch: int64(sourceDateEpoch), Jobs: jobs}}
	in.Smoke = engine.SmokeInput{Disk: disk, DiskBuilder: diskBuilder, QEMUImage: qemuImage, Accel: accel,
		Deadline: time.Duration(deadline) * time.Second, MemoryMB: memory}
	in.Build.RegistryAuth.Username, in.Build.BaseRegistryAuth.Username = registryUsername, baseRegistryUsername
	if in.Build.Dir, err = loadDir(ctx, c, dir); err != nil {
		return "", engine.Flatten(err)
	}
	if in.Build.Git, err = loadGit(ctx, c, git); err != nil {
		return "", engine.Flatten(err)
	}
	for _, s := range []struct {
		dst *(*lib.Secret)
		src *dagger.Secret
	}{
		{&in.Key, key}, {&in.Password, password},
		{&in.Build.RegistryAuth.Password, registryPassword}, {&in.Build.BaseRegistryAuth.Password, baseRegistryPassword},
		{&in.Build.EntitlementCert, entitlementCert}, {&in.Build.EntitlementKey, entitlementKey}, {&in.Build.RHSMCA, rhsmCa},
		{&in.Build.PasswordHash, passwordHash}, {&in.Build.InputsKey, inputsKey},
	} {
		if *s.dst, err = loadSecret(ctx, c, s.src); err != nil {
			return "", engine.Flatten(err)
		}
	}
	for _, f := range []struct {
		dst *(*lib.File)
		src *dagger.File
	}{{&in.Build.TrustKey, trustKey}, {&in.Build.PublicKey, publicKey}} {
		if *f.dst, err = loadFile(ctx, c, f.src); err != nil {
			return "", engine.Flatten(err)
		}
	}
	res, err := engine.CI(ctx, c, in, os.Stderr)
	if res != nil {
		out, jerr := res.JSON()
		if err != nil {
			return "", engine.Flatten(fmt.Errorf("%w\n\n%s", err, res.Text()))
		}
		return string(out), engine.Flatten(jerr)
	}
	return "", engine.Flatten(err)
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
	// Containerfiles directory: the layer's probes.
	// +defaultPath="/containerfiles"
	dir *dagger.Directory,
	// Tag the installed host follows (repository:tag); moved to the candidate for the upgrade step.
	// +optional
	channel string,
	// Images the host's signature policy must refuse (repeatable).
	// +optional
	refuse []string,
	// Disk builder image.
	// +optional
	diskBuilder string,
	// Container image QEMU runs in (see smoke-test).
	// +optional
	qemuImage string,
	// VM acceleration: auto, kvm or tcg.
	// +default="auto"
	accel string,
	// Seconds per step (a reboot plus probes).
	// +default=300
	stepDeadline int,
	// Username for the registry.
	// +optional
	registryUsername string,
	// Password or token for the registry.
	// +optional
	registryPassword *dagger.Secret,
) (string, error) {
	c, err := connect(ctx)
	if err != nil {
		return "", engine.Flatten(err)
	}
	defer c.Close()
	in := engine.LifecycleInput{Original: original, Candidate: candidate, Channel: channel, Refused: refuse, DiskBuilder: diskBuilder, QEMUImage: qemuImage,
		Accel: accel, StepDeadline: time.Duration(stepDeadline) * time.Second, RegistryAuth: engine.Credential{Username: registryUsername}}
	if in.Dir, err = loadDir(ctx, c, dir); err != nil {
		return "", engine.Flatten(err)
	}
	if in.RegistryAuth.Password, err = loadSecret(ctx, c, registryPassword); err != nil {
		return "", engine.Flatten(err)
	}
	rep, err := engine.Lifecycle(ctx, c, in, os.Stderr)
	if err != nil {
		return "", engine.Flatten(err)
	}
	out, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return "", engine.Flatten(fmt.Errorf("encoding the report: %w", err))
	}
	if rep.Verdict != "pass" {
		return "", engine.Flatten(fmt.Errorf("life-cycle test FAILED: %s\n%s", rep.Reason, out))
	}
	return string(out) + "\n", nil
}
