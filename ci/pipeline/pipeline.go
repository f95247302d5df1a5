// Package pipeline is the build spine: it checks the layer graph and Containerfiles, resolves the profile's base
// image to a digest, builds the layers level by level (layers of one level in parallel), each FROM its parent's
// exact digest under a run-scoped tag, and writes the candidate tags only when every level succeeded.
package pipeline

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/imagemode/imagemode/ci/build"
	"github.com/imagemode/imagemode/ci/buildctx"
	"github.com/imagemode/imagemode/ci/inputs"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/policy"
	"github.com/imagemode/imagemode/ci/profile"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/tags"
)

// Config is what one run builds.
type Config struct {
	// Source holds the containerfiles directory; Dir is the graph's folder inside it ("." for its root) and
	// DisplayDir how that folder is named in messages (what the user passed with --dir).
	Source     fs.FS
	Dir        string
	DisplayDir string
	// Registry is where layers are pushed: <Registry>/<layer>. Required to build.
	Registry string
	Profile  profile.Profile
	// Commit is the git commit the images are built from (labels, candidate tags).
	Commit string
	// SourceDateEpoch, when set, normalises timestamps in built layers. It was asked for, so it is an input: an
	// image built with another epoch is not reused.
	SourceDateEpoch int64
	// CommitTime is the timestamp used when SourceDateEpoch is 0 (the CLI's default: the commit's time). It is not an
	// input: like the revision label, a reused image keeps the time of the commit it was built at.
	CommitTime int64
	// RunID scopes the tags written while the run is in progress.
	RunID string
	// Layers restricts the run to these layers and their ancestors; empty builds the whole graph.
	Layers []string
	// BuildArgs are extra build arguments passed to every layer (never secrets: they are recorded in the image).
	BuildArgs map[string]string
	// Secrets lists the ids of the build secrets the builder holds (only presence is checked here).
	Secrets []string
	// RegistryAuth lists the hosts that have explicit credentials (the base registry for RHEL).
	RegistryAuth []string
	// SourceURL, when set, becomes the org.opencontainers.image.source label.
	SourceURL string
	// ExtraFiles are generated files added to a layer's build context (layer → path → content).
	ExtraFiles map[string]map[string][]byte
	// Trust, when set, makes the root layer ship a host signature policy for these namespaces and this key
	// (ci/policy); without it the root layer gets a note saying no policy is installed.
	Trust *policy.Config
	// Reuse looks every layer's input digest up in the registry before building it and reuses a signed image
	// with the same inputs (needs a verifier: WithVerifier).
	Reuse bool
	// Refresh forces these layers (or "all") to be built even when their inputs are unchanged (errata).
	Refresh []string
	// SecretInputs are the values of build secrets that change an image's content (the password hash); they enter
	// the input digest only as an HMAC keyed with InputsKey.
	SecretInputs map[string][]byte
	InputsKey    []byte
	// External says the layers are built by a builder outside this process (the Dagger module: BuildAll is not
	// used, the builder drives Begin and Advance through step files). Such a builder sets no image times, so
	// SourceDateEpoch is applied to the pushed image after the push.
	External bool
}

func (c Config) refresh(layer string) bool {
	for _, r := range c.Refresh {
		if r == "all" || r == layer {
			return true
		}
	}
	return false
}

// Pipeline runs builds.
type Pipeline struct {
	builder  build.Builder
	reg      *registry.Client
	verifier signing.Verifier
	log      io.Writer
	jobs     int
	now      func() time.Time
}

// WithVerifier checks the signature of every image before it is reused.
func WithVerifier(v signing.Verifier) Option { return func(p *Pipeline) { p.verifier = v } }

// Option configures a Pipeline.
type Option func(*Pipeline)

// WithLog sends progress lines to w.
func WithLog(w io.Writer) Option { return func(p *Pipeline) { p.log = w } }

// WithJobs bounds how many layers of one level build at once (default: all of them).
func WithJobs(n int) Option { return func(p *Pipeline) { p.jobs = n } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(p *Pipeline) { p.now = now } }

// New returns a Pipeline. The builder may be nil for Plan.
func New(b build.Builder, reg *registry.Client, opts ...Option) *Pipeline {
	p := &Pipeline{builder: b, reg: reg, log: io.Discard, now: time.Now}
	for _, o := range opts {
		o(p)
	}
	return p
}

func (p *Pipeline) logf(format string, args ...any) {
	fmt.Fprintf(p.log, "imagemode: "+format+"\n", args...)
}

// Plan is the build order and the references a run would write.
type Plan struct {
	Profile    profile.Profile `json:"profile"`
	BaseImage  string          `json:"baseImage"`
	BaseDigest string          `json:"baseDigest,omitempty"`
	Registry   string          `json:"registry,omitempty"`
	Commit     string          `json:"commit,omitempty"`
	RunID      string          `json:"runId,omitempty"`
	Levels     [][]PlanLayer   `json:"levels"`
}

// PlanLayer is one layer of a plan.
type PlanLayer struct {
	Name          string       `json:"name"`
	Parent        string       `json:"parent,omitempty"`
	Level         int          `json:"level"`
	Description   string       `json:"description,omitempty"`
	Containerfile string       `json:"containerfile"`
	Repository    string       `json:"repository,omitempty"`
	RunTag        string       `json:"runTag,omitempty"`
	CandidateTag  string       `json:"candidateTag,omitempty"`
	Smoke         layers.Smoke `json:"smoke"`
}

// Names returns the plan's levels as names only.
func (pl *Plan) Names() [][]string {
	out := make([][]string, len(pl.Levels))
	for i, lv := range pl.Levels {
		for _, l := range lv {
			out[i] = append(out[i], l.Name)
		}
	}
	return out
}

// PlanOptions say how much of a plan to fill in.
type PlanOptions struct {
	// Resolve asks the registry for the base image digest.
	Resolve bool
}

// Plan checks the graph, the Containerfiles and the profile and returns the build order. It builds nothing.
func (p *Pipeline) Plan(ctx context.Context, cfg Config, opts PlanOptions) (*Plan, error) {
	pl, _, err := p.plan(ctx, cfg, opts.Resolve)
	return pl, err
}

func (p *Pipeline) plan(ctx context.Context, cfg Config, resolve bool) (*Plan, *layers.Graph, error) {
	display := cfg.DisplayDir
	if display == "" {
		display = cfg.Dir
	}
	g, err := layers.Open(cfg.Source, cfg.Dir, display)
	if err != nil {
		return nil, nil, err
	}
	if err := layers.Lint(cfg.Source, cfg.Dir, display, g); err != nil {
		return nil, nil, err
	}
	if len(cfg.Layers) > 0 {
		keep := map[string]bool{}
		for _, n := range cfg.Layers {
			chain, err := g.Ancestors(n)
			if err != nil {
				return nil, nil, err
			}
			for _, c := range chain {
				keep[c] = true
			}
		}
		var names []string
		for n := range keep {
			names = append(names, n)
		}
		if g, err = g.Subgraph(names); err != nil {
			return nil, nil, err
		}
	}
	if cfg.Registry != "" {
		if err := registry.ValidatePrefix(cfg.Registry); err != nil {
			return nil, nil, err
		}
	}
	if cfg.Commit != "" {
		if err := tags.ValidateCommit(cfg.Commit); err != nil {
			return nil, nil, err
		}
	}
	if cfg.RunID != "" {
		if err := tags.ValidateRunID(cfg.RunID); err != nil {
			return nil, nil, err
		}
	}
	for k := range cfg.BuildArgs {
		if k == layers.BaseImageArg {
			return nil, nil, fmt.Errorf("--build-arg %s: the pipeline sets %s itself (the parent's digest)", k, k)
		}
	}
	pl := &Plan{Profile: cfg.Profile, BaseImage: cfg.Profile.BaseImage, Registry: strings.TrimSuffix(cfg.Registry, "/"), Commit: cfg.Commit, RunID: cfg.RunID}
	for i, names := range g.Levels() {
		var lv []PlanLayer
		for _, n := range names {
			l, _ := g.Layer(n)
			pll := PlanLayer{Name: n, Parent: l.Parent, Level: i, Description: l.Description,
				Containerfile: path.Join(display, l.ContainerfilePath()), Smoke: l.Smoke}
			if pl.Registry != "" {
				pll.Repository = pl.Registry + "/" + n
			}
			if cfg.RunID != "" {
				pll.RunTag = tags.Run(cfg.RunID, cfg.Profile.Name)
			}
			if cfg.Commit != "" {
				pll.CandidateTag = tags.Candidate(cfg.Commit, cfg.Profile.Name)
			}
			lv = append(lv, pll)
		}
		pl.Levels = append(pl.Levels, lv)
	}
	if resolve {
		d, err := p.reg.Digest(ctx, cfg.Profile.BaseImage)
		if err != nil {
			return nil, nil, fmt.Errorf("profile %q: resolving the base image: %w", cfg.Profile.Name, err)
		}
		pl.BaseDigest = d
	}
	return pl, g, nil
}

// injectTrust adds the host trust files to the build context of every root layer.
func (p *Pipeline) injectTrust(ctx context.Context, cfg Config, pl *Plan, g *layers.Graph) (Config, error) {
	var basePolicy []byte
	if cfg.Trust != nil {
		if err := cfg.Trust.Validate(); err != nil {
			return cfg, err
		}
		r, err := registry.ParseRef(pl.BaseImage)
		if err != nil {
			return cfg, err
		}
		baseRef := registry.DigestRef(r.Context().Name(), pl.BaseDigest)
		trust := *cfg.Trust
		trust.BaseRepository = r.Context().Name()
		cfg.Trust = &trust
		if fr, ok := p.builder.(build.FileReader); ok {
			basePolicy, err = fr.ReadImageFile(ctx, baseRef, policy.PolicyPath)
		} else {
			basePolicy, err = p.reg.ReadFile(ctx, baseRef, policy.PolicyPath)
		}
		if err != nil {
			return cfg, fmt.Errorf("reading the base image's %s: %w", policy.PolicyPath, err)
		}
	}
	files, err := policy.Files(basePolicy, cfg.Trust)
	if err != nil {
		return cfg, err
	}
	extra := map[string]map[string][]byte{}
	for k, v := range cfg.ExtraFiles {
		extra[k] = v
	}
	for _, l := range g.Layers() {
		if l.Parent != "" {
			continue
		}
		if cfg.Trust != nil {
			cf := path.Join(cfg.Dir, l.ContainerfilePath())
			data, err := fs.ReadFile(cfg.Source, cf)
			if err != nil {
				return cfg, fmt.Errorf("reading %q: %w", cf, err)
			}
			if !layers.CopiesFrom(data, policy.ContextDir) {
				return cfg, fmt.Errorf("%s: the root layer must `COPY %s/ /` to install the host trust policy (--trust-key was given)",
					path.Join(cfg.DisplayDir, l.ContainerfilePath()), policy.ContextDir)
			}
			p.logf("%s: installing the signature policy for %s", l.Name, strings.Join(cfg.Trust.Namespaces, ", "))
		}
		merged := map[string][]byte{}
		for k, v := range extra[l.Name] {
			merged[k] = v
		}
		for k, v := range files {
			merged[k] = v
		}
		extra[l.Name] = merged
	}
	cfg.ExtraFiles = extra
	return cfg, nil
}

// inputDigest hashes everything that determines the layer: exactly the files sent to the builder.
func (p *Pipeline) inputDigest(cfg Config, layer layers.Layer, ctxDir string, files []buildctx.File, args, labels map[string]string, parentDigest string) (string, error) {
	in := inputs.Inputs{Layer: layer.Name, Profile: cfg.Profile.Name, Containerfile: layer.Containerfile, ParentDigest: parentDigest,
		SourceDateEpoch: cfg.SourceDateEpoch,
		Generated:       cfg.ExtraFiles[layer.Name], BuildArgs: args, Secrets: cfg.SecretInputs, Key: cfg.InputsKey, Labels: map[string]string{}}
	for k, v := range labels {
		switch k {
		case layers.LabelRevision, layers.LabelBaseName, layers.LabelBaseDigest:
			// The commit is not an input (a reused image keeps the one it was built at); the parent is ParentDigest.
		default:
			in.Labels[k] = v
		}
	}
	for _, f := range files {
		full := path.Join(ctxDir, f.Path)
		var data []byte
		var err error
		if f.Mode&fs.ModeSymlink != 0 {
			var target string
			target, err = fs.ReadLink(cfg.Source, full)
			data = []byte(target)
		} else {
			data, err = fs.ReadFile(cfg.Source, full)
		}
		if err != nil {
			return "", fmt.Errorf("layer %q: reading %q: %w", layer.Name, full, err)
		}
		in.Files = append(in.Files, inputs.File{Path: f.Path, Mode: f.Mode, Content: data})
	}
	return inputs.Digest(in)
}

// reusable returns the digest of a signed image in repo built from exactly these inputs ("" if none) and the
// commit it was built at.
func (p *Pipeline) reusable(ctx context.Context, repo, inDigest string) (string, string, error) {
	ref := repo + ":" + tags.Inputs(inDigest)
	ok, err := p.reg.Exists(ctx, ref)
	if err != nil || !ok {
		return "", "", err
	}
	d, err := p.reg.Digest(ctx, ref)
	if err != nil {
		return "", "", err
	}
	dref := registry.DigestRef(repo, d)
	labels, err := p.reg.Labels(ctx, dref)
	if err != nil {
		return "", "", err
	}
	if labels[layers.LabelInputs] != inDigest {
		p.logf("not reusing %s: its %s label is %q", dref, layers.LabelInputs, labels[layers.LabelInputs])
		return "", "", nil
	}
	if err := p.verifier.Verify(ctx, dref); err != nil {
		p.logf("not reusing %s: %v", dref, err)
		return "", "", nil
	}
	return d, labels[layers.LabelRevision], nil
}

func ordered(pl *Plan, done map[string]report.Layer) []report.Layer {
	var out []report.Layer
	for _, lv := range pl.Levels {
		for _, l := range lv {
			if lr, ok := done[l.Name]; ok {
				out = append(out, lr)
			}
		}
	}
	return out
}

func countLayers(pl *Plan) int {
	n := 0
	for _, lv := range pl.Levels {
		n += len(lv)
	}
	return n
}

func levelsString(levels [][]string) string {
	parts := make([]string, len(levels))
	for i, lv := range levels {
		s := append([]string(nil), lv...)
		sort.Strings(s)
		parts[i] = "[" + strings.Join(s, " ") + "]"
	}
	return strings.Join(parts, " -> ")
}
