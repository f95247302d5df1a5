// Package daggerbuild builds layers with the Dagger engine: Directory.DockerBuild of exactly the filtered build
// context, labels, then Container.Publish. Dagger v0.19 cannot build a Containerfile FROM an image built in the same
// session, so the pipeline publishes every parent first and passes its digest as BASE_IMAGE.
package daggerbuild

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"dagger.io/dagger"

	"github.com/imagemode/imagemode/ci/build"
)

// RegistryAuth is a credential for one registry host.
type RegistryAuth struct {
	Host     string
	Username string
	Secret   *dagger.Secret
}

// Builder builds with a Dagger client.
type Builder struct {
	client  *dagger.Client
	src     *dagger.Directory
	secrets []*dagger.Secret
	auth    []RegistryAuth
	ids     []string
	retimer Retimer
}

// Retimer rewrites an image's creation times and pushes the result (registry.Client.SetCreated).
type Retimer interface {
	SetCreated(ctx context.Context, digestRef, target string, t time.Time) (string, error)
}

// WithRetimer applies a request's SourceDateEpoch after the push: DockerBuild keeps only the frontend's config, so
// the SOURCE_DATE_EPOCH build argument does not reach the image's created and history times.
func WithRetimer(r Retimer) Option { return func(b *Builder) { b.retimer = r } }

// Option configures a Builder.
type Option func(*Builder)

// WithSecret passes a build secret. Its name must be the id the Containerfiles use (see NamedSecret).
func WithSecret(id string, s *dagger.Secret) Option {
	return func(b *Builder) {
		b.secrets = append(b.secrets, s)
		b.ids = append(b.ids, id)
	}
}

// WithRegistryAuth gives credentials used for publishing (and pulls) of one registry host.
func WithRegistryAuth(a RegistryAuth) Option { return func(b *Builder) { b.auth = append(b.auth, a) } }

// New returns a Builder reading build contexts from src (the containerfiles directory).
func New(client *dagger.Client, src *dagger.Directory, opts ...Option) *Builder {
	b := &Builder{client: client, src: src}
	for _, o := range opts {
		o(b)
	}
	return b
}

// SecretIDs lists the ids of the build secrets passed to every build.
func (b *Builder) SecretIDs() []string { return append([]string(nil), b.ids...) }

// NamedSecret returns a secret whose name is id: Dagger mounts a Containerfile's
// `RUN --mount=type=secret,id=<id>` from the secret of that name, while secrets passed on the command line
// (env:, file:, cmd:) carry names of their own. The value stays inside the engine session.
func NamedSecret(ctx context.Context, client *dagger.Client, id string, s *dagger.Secret) (*dagger.Secret, error) {
	name, err := s.Name(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the name of build secret %q: %w", id, err)
	}
	if name == id {
		return s, nil
	}
	plain, err := s.Plaintext(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading build secret %q: %w", id, err)
	}
	return client.SetSecret(id, plain), nil
}

// Args converts build arguments to Dagger's form, sorted by name.
func Args(m map[string]string) []dagger.BuildArg {
	out := make([]dagger.BuildArg, 0, len(m))
	for _, k := range build.SortedKeys(m) {
		out = append(out, dagger.BuildArg{Name: k, Value: m[k]})
	}
	return out
}

// Build implements build.Builder.
func (b *Builder) Build(ctx context.Context, req build.Request) (build.Result, error) {
	if err := req.Validate(); err != nil {
		return build.Result{}, err
	}
	dir := b.src.Directory(req.ContextDir).Filter(dagger.DirectoryFilterOpts{Include: req.Files})
	extra := make([]string, 0, len(req.ExtraFiles))
	for p := range req.ExtraFiles {
		extra = append(extra, p)
	}
	sort.Strings(extra)
	for _, p := range extra {
		dir = dir.WithNewFile(p, string(req.ExtraFiles[p]))
	}
	// Dagger v0.19 gives a secret a Containerfile mounts but the caller did not pass a random id, so such a RUN step
	// would never be cached and an unchanged family would get new digests on every run: drop those mounts, as
	// BuildKit does for absent optional secrets.
	cf, err := b.src.Directory(req.ContextDir).File(req.Containerfile).Contents(ctx)
	if err != nil {
		return build.Result{}, fmt.Errorf("layer %q: reading %s: %w", req.Layer, path.Join(req.ContextDir, req.Containerfile), err)
	}
	stripped, removed, err := build.WithoutSecretMounts([]byte(cf), func(id string) bool { return slices.Contains(b.ids, id) })
	if err != nil {
		return build.Result{}, fmt.Errorf("layer %q: %s: %w", req.Layer, path.Join(req.ContextDir, req.Containerfile), err)
	}
	if len(removed) > 0 {
		dir = dir.WithNewFile(req.Containerfile, string(stripped))
	}
	args := map[string]string{}
	for k, v := range req.BuildArgs {
		args[k] = v
	}
	if req.SourceDateEpoch != 0 {
		// BuildKit's Dockerfile frontend normalises timestamps when this build argument is set.
		args["SOURCE_DATE_EPOCH"] = strconv.FormatInt(req.SourceDateEpoch, 10)
	}
	ctr := dir.DockerBuild(dagger.DirectoryDockerBuildOpts{
		Dockerfile: req.Containerfile,
		Platform:   "linux/amd64",
		BuildArgs:  Args(args),
		Secrets:    b.secrets,
	})
	for _, k := range build.SortedKeys(req.Labels) {
		ctr = ctr.WithLabel(k, req.Labels[k])
	}
	for _, a := range b.auth {
		ctr = ctr.WithRegistryAuth(a.Host, a.Username, a.Secret)
	}
	published, err := ctr.Publish(ctx, req.Target)
	if err != nil {
		return build.Result{}, fmt.Errorf("building and publishing layer %q to %q: %w", req.Layer, req.Target, err)
	}
	_, digest, ok := strings.Cut(published, "@")
	if !ok || !strings.HasPrefix(digest, "sha256:") {
		return build.Result{}, fmt.Errorf("layer %q: the engine published %q without a digest", req.Layer, published)
	}
	repo := req.Target[:strings.LastIndex(req.Target, ":")]
	if req.SourceDateEpoch != 0 && b.retimer != nil {
		if digest, err = b.retimer.SetCreated(ctx, repo+"@"+digest, req.Target, time.Unix(req.SourceDateEpoch, 0)); err != nil {
			return build.Result{}, fmt.Errorf("layer %q: applying SOURCE_DATE_EPOCH: %w", req.Layer, err)
		}
	}
	return build.Result{Digest: digest, Ref: repo + "@" + digest}, nil
}

// ReadImageFile implements build.FileReader: the engine pulls the image (it will for the build anyway) and reads
// one file of it.
func (b *Builder) ReadImageFile(ctx context.Context, ref, path string) ([]byte, error) {
	ctr := b.client.Container(dagger.ContainerOpts{Platform: "linux/amd64"})
	for _, a := range b.auth {
		ctr = ctr.WithRegistryAuth(a.Host, a.Username, a.Secret)
	}
	ctr = ctr.From(ref)
	ok, err := ctr.Exists(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("looking for %s in %q: %w", path, ref, err)
	}
	if !ok {
		return nil, nil
	}
	s, err := ctr.File(path).Contents(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading %s from %q: %w", path, ref, err)
	}
	return []byte(s), nil
}
