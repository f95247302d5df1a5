// Package engine is what the Dagger module's functions delegate to: it turns engine objects (directories, git
// repositories, secrets) into the pure core's inputs and runs the pipeline with the Dagger builder. It is written
// against dagger.io/dagger so that it compiles and is reviewed without an engine; the module's shims connect a
// client inside the function (it joins the caller's session) and pass objects by ID.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"dagger.io/dagger"

	"github.com/imagemode/imagemode/ci/build/daggerbuild"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/pipeline"
	"github.com/imagemode/imagemode/ci/policy"
	"github.com/imagemode/imagemode/ci/profile"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/release"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/tags"
)

// Registry credentials for one host.
type Credential struct {
	Username string
	Password *dagger.Secret
}

// BuildInput is everything build-all and build take.
type BuildInput struct {
	// Dir is the containerfiles directory (layers.yaml and one folder per layer).
	Dir *dagger.Directory
	// Git is the checkout the commit is read from when Commit is empty.
	Git       *dagger.GitRepository
	Registry  string
	Profile   string
	BaseImage string
	Commit    string
	RunID     string
	// Layers restricts the build to these layers and their ancestors.
	Layers          []string
	BuildArgs       []string
	SourceURL       string
	SourceDateEpoch int64
	Jobs            int
	// RegistryAuth is for --registry; BaseRegistryAuth for the profile's base image registry.
	RegistryAuth     Credential
	BaseRegistryAuth Credential
	EntitlementCert  *dagger.Secret
	EntitlementKey   *dagger.Secret
	RHSMCA           *dagger.Secret
	PasswordHash     *dagger.Secret
	// TrustKey, when set, makes the SOE install the host signature policy for TrustedNamespaces (default: Registry).
	TrustKey          *dagger.File
	TrustedNamespaces []string
	// TrustMode is policy.ModeReject (default) or ModeNamespaces; TrustAllowBase lets hosts switch back to the base.
	TrustMode      string
	TrustAllowBase bool
	// Reuse reuses signed images with unchanged inputs; PublicKey verifies them; Refresh forces layers.
	Reuse     bool
	PublicKey *dagger.File
	Refresh   []string
	// InputsKey keys the HMAC of secret inputs in input digests.
	InputsKey *dagger.Secret
}

// localCopy exports dir into a temporary folder of the module's runtime container (not the caller's host) so the
// pure core can read it through fs.FS.
func localCopy(ctx context.Context, dir *dagger.Directory) (string, func(), error) {
	tmp, err := os.MkdirTemp("", "imagemode-src-")
	if err != nil {
		return "", nil, fmt.Errorf("creating a temporary folder: %w", err)
	}
	if _, err := dir.Export(ctx, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", nil, fmt.Errorf("reading the containerfiles directory: %w", err)
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

// openGraph reads the layer graph (layers.yaml) of dir; the graph holds no reference to the copy it was read from.
func openGraph(ctx context.Context, dir *dagger.Directory) (*layers.Graph, error) {
	local, cleanup, err := localCopy(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	return layers.Open(os.DirFS(local), ".", "containerfiles")
}

// Lint checks the layer graph and the Containerfiles of dir.
func Lint(ctx context.Context, dir *dagger.Directory) error {
	local, cleanup, err := localCopy(ctx, dir)
	if err != nil {
		return err
	}
	defer cleanup()
	return layers.Check(os.DirFS(local), ".", "containerfiles")
}

// PlanInput is what plan takes.
type PlanInput struct {
	Profile, BaseImage, Registry, Commit, RunID string
	// Resolve asks the base image's registry for its digest.
	Resolve          bool
	BaseRegistryAuth Credential
}

// Plan returns the build levels and references; with Resolve, the base image digest too.
func Plan(ctx context.Context, dir *dagger.Directory, in PlanInput) (*pipeline.Plan, error) {
	local, cleanup, err := localCopy(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	prof, err := profile.Resolve(in.Profile, in.BaseImage)
	if err != nil {
		return nil, err
	}
	if in.Resolve {
		if err := CheckReachable("--base-image", prof.BaseImage); err != nil {
			return nil, err
		}
	}
	reg, err := registryClient(ctx, Credential{}, in.BaseRegistryAuth, "", prof.BaseImage)
	if err != nil {
		return nil, err
	}
	cfg := pipeline.Config{Source: os.DirFS(local), Dir: ".", DisplayDir: "containerfiles", Profile: prof, Registry: in.Registry,
		Commit: in.Commit, RunID: in.RunID}
	return pipeline.New(nil, reg).Plan(ctx, cfg, pipeline.PlanOptions{Resolve: in.Resolve})
}

// BuildAll builds with the engine and returns the report (partial, with the error, when a layer failed).
func BuildAll(ctx context.Context, client *dagger.Client, in BuildInput, log io.Writer) (*report.Report, error) {
	cfg, p, _, cleanup, err := newPipeline(ctx, client, in, log)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	return p.BuildAll(ctx, cfg)
}

// newPipeline turns the module's arguments into a pipeline configuration and a pipeline building with the engine.
func newPipeline(ctx context.Context, client *dagger.Client, in BuildInput, log io.Writer) (cfg pipeline.Config, p *pipeline.Pipeline, reg *registry.Client, cleanup func(), err error) {
	cleanup = func() {}
	prof, err := profile.Resolve(in.Profile, in.BaseImage)
	if err != nil {
		return cfg, nil, nil, cleanup, err
	}
	if err := registry.ValidatePrefix(in.Registry); err != nil {
		return cfg, nil, nil, cleanup, err
	}
	if err := CheckReachable("--registry", in.Registry); err != nil {
		return cfg, nil, nil, cleanup, err
	}
	if err := CheckReachable("--base-image", prof.BaseImage); err != nil {
		return cfg, nil, nil, cleanup, err
	}
	commit := in.Commit
	if commit == "" {
		if in.Git == nil {
			return cfg, nil, nil, cleanup, errors.New("--commit is required when no git checkout is available")
		}
		if commit, err = in.Git.Head().Commit(ctx); err != nil {
			return cfg, nil, nil, cleanup, fmt.Errorf("reading the commit of the checkout (pass --commit): %w", err)
		}
	}
	runID := in.RunID
	if runID == "" {
		runID = tags.NewRunID(time.Now())
	}
	args := map[string]string{}
	for _, kv := range in.BuildArgs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return cfg, nil, nil, cleanup, fmt.Errorf("--build-arg %q: want KEY=VALUE", kv)
		}
		args[k] = v
	}

	var opts []daggerbuild.Option
	var secretIDs []string
	for _, s := range []struct {
		id     string
		secret *dagger.Secret
	}{
		{profile.SecretEntitlementCert, in.EntitlementCert},
		{profile.SecretEntitlementKey, in.EntitlementKey},
		{profile.SecretRHSMCA, in.RHSMCA},
		{profile.SecretPasswordHash, in.PasswordHash},
	} {
		if s.secret == nil {
			continue
		}
		named, err := daggerbuild.NamedSecret(ctx, client, s.id, s.secret)
		if err != nil {
			return cfg, nil, nil, cleanup, err
		}
		opts = append(opts, daggerbuild.WithSecret(s.id, named))
		secretIDs = append(secretIDs, s.id)
	}
	var authHosts []string
	for _, a := range []struct {
		ref  string
		cred Credential
	}{{in.Registry, in.RegistryAuth}, {prof.BaseImage, in.BaseRegistryAuth}} {
		if a.cred.Username == "" || a.cred.Password == nil {
			continue
		}
		host, _, _ := strings.Cut(a.ref, "/")
		opts = append(opts, daggerbuild.WithRegistryAuth(daggerbuild.RegistryAuth{Host: host, Username: a.cred.Username, Secret: a.cred.Password}))
		authHosts = append(authHosts, host)
	}
	reg, err = registryClient(ctx, in.RegistryAuth, in.BaseRegistryAuth, in.Registry, prof.BaseImage)
	if err != nil {
		return cfg, nil, nil, cleanup, err
	}
	local, rm, err := localCopy(ctx, in.Dir)
	if err != nil {
		return cfg, nil, nil, cleanup, err
	}
	cleanup = rm

	cfg = pipeline.Config{
		Source: os.DirFS(local), Dir: ".", DisplayDir: "containerfiles",
		Registry: in.Registry, Profile: prof, Commit: commit, SourceDateEpoch: in.SourceDateEpoch,
		RunID: runID, Layers: in.Layers, BuildArgs: args, Secrets: secretIDs, RegistryAuth: authHosts,
		SourceURL: in.SourceURL,
	}
	if in.TrustKey != nil {
		pub, err := in.TrustKey.Contents(ctx)
		if err != nil {
			return cfg, nil, nil, cleanup, fmt.Errorf("reading --trust-key: %w", err)
		}
		ns := in.TrustedNamespaces
		if len(ns) == 0 {
			ns = []string{in.Registry}
		}
		cfg.Trust = &policy.Config{PublicKey: []byte(pub), Namespaces: ns, Mode: in.TrustMode, AllowBase: in.TrustAllowBase}
	} else if len(in.TrustedNamespaces) > 0 || in.TrustAllowBase {
		return cfg, nil, nil, cleanup, errors.New("--trusted-namespace and --trust-allow-base need --trust-key")
	}
	cfg.Reuse, cfg.Refresh = in.Reuse, in.Refresh
	if in.PasswordHash != nil {
		v, err := in.PasswordHash.Plaintext(ctx)
		if err != nil {
			return cfg, nil, nil, cleanup, fmt.Errorf("reading --password-hash: %w", err)
		}
		cfg.SecretInputs = map[string][]byte{profile.SecretPasswordHash: []byte(v)}
	}
	if in.InputsKey != nil {
		k, err := in.InputsKey.Plaintext(ctx)
		if err != nil {
			return cfg, nil, nil, cleanup, fmt.Errorf("reading --inputs-key: %w", err)
		}
		cfg.InputsKey = []byte(k)
	}
	popts := []pipeline.Option{pipeline.WithLog(log), pipeline.WithJobs(in.Jobs)}
	if in.PublicKey != nil {
		v, err := verifier(ctx, SignInput{PublicKey: in.PublicKey}, reg)
		if err != nil {
			return cfg, nil, nil, cleanup, err
		}
		popts = append(popts, pipeline.WithVerifier(v))
	}
	builder := daggerbuild.New(client, in.Dir, append(opts, daggerbuild.WithRetimer(reg))...)
	return cfg, pipeline.New(builder, reg, popts...), reg, cleanup, nil
}

// registryClient builds the go-containerregistry client with the explicit credentials (plaintext stays in memory).
func registryClient(ctx context.Context, pushAuth, baseAuth Credential, registryRef, baseImage string) (*registry.Client, error) {
	var opts []registry.Option
	for _, a := range []struct {
		ref  string
		cred Credential
		flag string
	}{{registryRef, pushAuth, "--registry-password"}, {baseImage, baseAuth, "--base-registry-password"}} {
		if a.cred.Username == "" {
			continue
		}
		if a.cred.Password == nil {
			return nil, fmt.Errorf("%s is required with a username", a.flag)
		}
		pass, err := a.cred.Password.Plaintext(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", a.flag, err)
		}
		host, _, _ := strings.Cut(a.ref, "/")
		opts = append(opts, registry.WithCredentials(host, a.cred.Username, pass))
	}
	return registry.New(opts...), nil
}

// SignInput is what sign, verify and promote take from the module.
type SignInput struct {
	// Images are digest references; Report, a build-all report (JSON), adds every layer of it.
	Images []string
	Report string
	// Key and Password sign (key mode); PublicKey verifies.
	Key       *dagger.Secret
	Password  *dagger.Secret
	PublicKey *dagger.File
	// RegistryAuth is for the images' registry.
	Registry     string
	RegistryAuth Credential
}

func (in SignInput) refs() ([]string, error) {
	out := append([]string(nil), in.Images...)
	if in.Report != "" {
		rep, err := report.Parse([]byte(in.Report))
		if err != nil {
			return nil, fmt.Errorf("--report: %w", err)
		}
		for _, l := range rep.Layers {
			out = append(out, l.Ref)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no image: pass --image REPOSITORY@sha256:... or --report (the JSON of build-all)")
	}
	for _, r := range out {
		if _, _, err := registry.SplitDigestRef(r); err != nil {
			return nil, fmt.Errorf("--image %q: signatures are made for digests, never tags: %w", r, err)
		}
		if err := CheckReachable("--image", r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (in SignInput) client(ctx context.Context) (*registry.Client, error) {
	ref := in.Registry
	if ref == "" && len(in.Images) > 0 {
		ref = in.Images[0]
	}
	return registryClient(ctx, in.RegistryAuth, Credential{}, ref, "")
}

func signer(ctx context.Context, in SignInput, reg *registry.Client) (*signing.KeySigner, error) {
	if in.Key == nil {
		return nil, errors.New("--key is required: the cosign private key (a secret)")
	}
	key, err := in.Key.Plaintext(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading --key: %w", err)
	}
	var pass string
	if in.Password != nil {
		if pass, err = in.Password.Plaintext(ctx); err != nil {
			return nil, fmt.Errorf("reading --password: %w", err)
		}
	}
	return signing.NewKeySigner([]byte(key), []byte(pass), reg)
}

func verifier(ctx context.Context, in SignInput, reg *registry.Client) (*signing.KeyVerifier, error) {
	if in.PublicKey == nil {
		return nil, errors.New("--public-key is required")
	}
	pub, err := in.PublicKey.Contents(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading --public-key: %w", err)
	}
	return signing.NewKeyVerifier([]byte(pub), reg)
}

// Sign signs every image by digest and returns one line per image.
func Sign(ctx context.Context, in SignInput) (string, error) {
	refs, err := in.refs()
	if err != nil {
		return "", err
	}
	reg, err := in.client(ctx)
	if err != nil {
		return "", err
	}
	s, err := signer(ctx, in, reg)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, r := range refs {
		if err := s.Sign(ctx, r); err != nil {
			return b.String(), err
		}
		fmt.Fprintf(&b, "signed %s\n", r)
	}
	return b.String(), nil
}

// Verify verifies every image's signature and fails if any does not verify.
func Verify(ctx context.Context, in SignInput) (string, error) {
	refs, err := in.refs()
	if err != nil {
		return "", err
	}
	reg, err := in.client(ctx)
	if err != nil {
		return "", err
	}
	v, err := verifier(ctx, in, reg)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	var failed int
	for _, r := range refs {
		if err := v.Verify(ctx, r); err != nil {
			failed++
			fmt.Fprintf(&b, "FAIL %s: %v\n", r, err)
			continue
		}
		fmt.Fprintf(&b, "OK   %s\n", r)
	}
	if failed > 0 {
		return "", fmt.Errorf("%d of %d image(s) not verified:\n%s", failed, len(refs), b.String())
	}
	return b.String(), nil
}

// PromoteInput is what promote takes.
type PromoteInput struct {
	SignInput
	Dir             *dagger.Directory
	Tag             string
	Commit          string
	Git             *dagger.GitRepository
	ReleaseRegistry string
	Profiles        []string
	Force           bool
	ExpectRun       string
}

// Promote verifies the tag's candidates and moves the release tags; it returns the promotion report (JSON).
func Promote(ctx context.Context, in PromoteInput, log io.Writer) (*release.Report, error) {
	g, err := openGraph(ctx, in.Dir)
	if err != nil {
		return nil, err
	}
	ls := release.LayersOf(g)
	commit := in.Commit
	if commit == "" {
		if in.Git == nil {
			return nil, errors.New("--commit is required when no git checkout is available")
		}
		if commit, err = in.Git.Tag(in.Tag).Commit(ctx); err != nil {
			return nil, fmt.Errorf("resolving the git tag %q (pass --commit): %w", in.Tag, err)
		}
	}
	in.SignInput.Registry = in.Registry
	for _, r := range []struct{ flag, ref string }{{"--registry", in.Registry}, {"--release-registry", in.ReleaseRegistry}} {
		if err := CheckReachable(r.flag, r.ref); err != nil {
			return nil, err
		}
	}
	reg, err := in.client(ctx)
	if err != nil {
		return nil, err
	}
	v, err := verifier(ctx, in.SignInput, reg)
	if err != nil {
		return nil, err
	}
	opts := []release.Option{release.WithLog(log)}
	if in.Key != nil {
		s, err := signer(ctx, in.SignInput, reg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, release.WithSigner(s))
	}
	return release.New(reg, v, opts...).Promote(ctx, release.Config{
		Tag: in.Tag, Commit: commit, Registry: in.Registry, ReleaseRegistry: in.ReleaseRegistry,
		Profiles: in.Profiles, Layers: ls, Force: in.Force, ExpectRun: in.ExpectRun,
	})
}
