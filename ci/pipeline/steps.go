package pipeline

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imagemode/imagemode/ci/build"
	"github.com/imagemode/imagemode/ci/buildctx"
	"github.com/imagemode/imagemode/ci/buildstep"
	"github.com/imagemode/imagemode/ci/inputs"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/profile"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/tags"
)

// Progress is a run between two batches of builds: the layers finished, the layers of one level waiting for their
// builds, and what the run fixed at its start (the base image's digest, the generated files). BuildAll keeps it in
// memory; a builder outside the process (the Dagger module) carries it between CLI calls in step files.
type Progress struct {
	// Report is the report's header (no layers); Order is every planned layer in build order.
	Report report.Report `json:"report"`
	Order  []string      `json:"order"`
	// Level is the level Pending belongs to.
	Level   int                     `json:"level"`
	Done    map[string]report.Layer `json:"done"`
	Pending []Pending               `json:"pending,omitempty"`
	// Extra are the generated files of each layer's build context (the host trust policy), made once.
	Extra map[string]map[string][]byte `json:"extra,omitempty"`
	// Finished is set once every layer is done and the candidate tags are written.
	Finished bool `json:"finished"`
}

// Pending is a layer waiting for its build.
type Pending struct {
	Layer   report.Layer  `json:"layer"`
	Request build.Request `json:"request"`
	// Since is when the layer's preparation started (its duration counts from there).
	Since time.Time `json:"since"`
}

// Outcome is what became of one pending build.
type Outcome struct {
	Layer  string
	Result build.Result
	Err    error
}

// Result is the run's report as far as it went: every finished layer in build order.
func (pr *Progress) Result(now time.Time) *report.Report {
	rep := pr.Report
	rep.Layers = nil
	for _, n := range pr.Order {
		if l, ok := pr.Done[n]; ok {
			rep.Layers = append(rep.Layers, l)
		}
	}
	rep.DurationMS = now.Sub(rep.Started).Milliseconds()
	return &rep
}

// Builds are the pending build requests.
func (pr *Progress) Builds() []build.Request {
	out := make([]build.Request, len(pr.Pending))
	for i, pd := range pr.Pending {
		out[i] = pd.Request
	}
	return out
}

// BuildAll builds the planned layers with the pipeline's builder and writes their candidate tags. On error it
// returns the partial report (what was pushed under run-scoped tags) with the error; no candidate tag is written
// unless every layer succeeded. It is Begin and Advance in a loop, with the builds in this process.
func (p *Pipeline) BuildAll(ctx context.Context, cfg Config) (*report.Report, error) {
	if p.builder == nil {
		return nil, errors.New("no builder configured")
	}
	pr, err := p.Begin(ctx, cfg)
	for err == nil && !pr.Finished {
		pr, err = p.Advance(ctx, cfg, pr, p.build(ctx, pr.Pending))
	}
	if pr == nil {
		return nil, err
	}
	return pr.Result(p.now()), err
}

// build runs the pending builds, at most p.jobs at once; a failed build does not stop the others of its level.
func (p *Pipeline) build(ctx context.Context, pending []Pending) []Outcome {
	out := make([]Outcome, len(pending))
	limit := len(pending)
	if p.jobs > 0 {
		limit = p.jobs
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i, pd := range pending {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := p.builder.Build(ctx, pd.Request)
			out[i] = Outcome{Layer: pd.Layer.Name, Result: res, Err: err}
		}()
	}
	wg.Wait()
	return out
}

// normalize turns reuse off when nothing can verify what would be reused (said once, by Begin).
func (p *Pipeline) normalize(cfg Config) Config {
	if cfg.Reuse && p.verifier == nil {
		cfg.Reuse = false
	}
	return cfg
}

// Begin checks the run, resolves the base image, makes the generated files and prepares levels until one needs
// builds: those are the progress's Pending (none when every layer was reused; then the run is Finished). A run
// that cannot start returns no progress; one that fails while preparing returns what it did so far.
func (p *Pipeline) Begin(ctx context.Context, cfg Config) (*Progress, error) {
	if err := registry.ValidatePrefix(cfg.Registry); err != nil {
		return nil, err
	}
	if cfg.Commit == "" {
		return nil, errors.New("--commit is required: the git commit the images are built from (the CLI reads it from the checkout)")
	}
	if cfg.RunID == "" {
		return nil, errors.New("--run-id is required")
	}
	if err := cfg.Profile.Check(profile.Inputs{RegistryAuth: cfg.RegistryAuth, Secrets: cfg.Secrets}); err != nil {
		return nil, err
	}
	start := p.now()
	pl, g, err := p.plan(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	for _, r := range cfg.Refresh {
		if _, ok := g.Layer(r); !ok && r != "all" {
			return nil, fmt.Errorf("--refresh %q: not a layer of %s (or \"all\")", r, g.File)
		}
	}
	if cfg.Reuse && p.verifier == nil {
		p.logf("reuse is off: it needs a public key to verify what it reuses")
	}
	cfg = p.normalize(cfg)
	p.logf("profile %s: base %s resolved to %s", cfg.Profile.Name, pl.BaseImage, pl.BaseDigest)
	if cfg, err = p.injectTrust(ctx, cfg, pl, g); err != nil {
		return nil, err
	}
	p.logf("building %d layer(s) in %d level(s): %s", countLayers(pl), len(pl.Levels), levelsString(pl.Names()))
	pr := &Progress{
		Report: report.Report{Version: report.Version, RunID: cfg.RunID, Commit: cfg.Commit, Registry: pl.Registry,
			Profile: cfg.Profile.Name, ProfileMajor: cfg.Profile.Major, BaseImage: pl.BaseImage, BaseDigest: pl.BaseDigest, Started: start.UTC(),
			GraphFile: path.Join(cfg.DisplayDir, layers.GraphFile), BuildArgs: cfg.BuildArgs, SourceURL: cfg.SourceURL},
		Done: map[string]report.Layer{}, Extra: cfg.ExtraFiles,
	}
	if pr.Report.GraphDigest, err = fileDigest(cfg.Source, path.Join(cfg.Dir, layers.GraphFile)); err != nil {
		return nil, err
	}
	for _, lv := range pl.Names() {
		pr.Order = append(pr.Order, lv...)
	}
	return p.next(ctx, cfg, pl, g, pr, 0)
}

// Advance takes the outcomes of the pending builds: it checks every pushed image against the registry, applies
// an external builder's SourceDateEpoch, writes the inputs tags, then prepares the next levels. A failed build
// stops the run at the end of its level, with the partial report and no candidate tag.
func (p *Pipeline) Advance(ctx context.Context, cfg Config, pr *Progress, outcomes []Outcome) (*Progress, error) {
	if pr == nil || pr.Finished || len(pr.Pending) == 0 {
		return pr, errors.New("advancing a run that waits for no build")
	}
	for _, c := range []struct{ what, have, want string }{
		{"run", pr.Report.RunID, cfg.RunID}, {"commit", pr.Report.Commit, cfg.Commit},
		{"profile", pr.Report.Profile, cfg.Profile.Name}, {"registry", pr.Report.Registry, trimSlash(cfg.Registry)},
	} {
		if c.have != c.want {
			return nil, fmt.Errorf("the step belongs to %s %q, the arguments name %q: give every step the same arguments", c.what, c.have, c.want)
		}
	}
	cfg = p.normalize(cfg)
	cfg.ExtraFiles = pr.Extra
	pl, g, err := p.plan(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	pl.BaseDigest = pr.Report.BaseDigest
	byLayer := map[string]Outcome{}
	for _, o := range outcomes {
		byLayer[o.Layer] = o
	}
	var errs []error
	for _, pd := range pr.Pending {
		o, ok := byLayer[pd.Layer.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("layer %q: the builder reported nothing", pd.Layer.Name))
			continue
		}
		if o.Err != nil {
			errs = append(errs, o.Err)
			continue
		}
		lr, err := p.finishLayer(ctx, cfg, pd, o.Result)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pr.Done[lr.Name] = lr
	}
	if len(byLayer) != len(pr.Pending) {
		errs = append(errs, fmt.Errorf("%d outcome(s) for %d pending build(s)", len(byLayer), len(pr.Pending)))
	}
	level := pr.Level
	pr.Pending = nil
	if len(errs) > 0 {
		p.logf("level %d failed: no candidate tag written", level)
		return pr, fmt.Errorf("level %d: %w", level, errors.Join(errs...))
	}
	return p.next(ctx, cfg, pl, g, pr, level+1)
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// next prepares levels from level on until one needs builds; after the last level it writes the candidate tags.
func (p *Pipeline) next(ctx context.Context, cfg Config, pl *Plan, g *layers.Graph, pr *Progress, level int) (*Progress, error) {
	for ; level < len(pl.Levels); level++ {
		pending, err := p.prepareLevel(ctx, cfg, pl, g, pr, level)
		if err != nil {
			p.logf("level %d failed: no candidate tag written", level)
			return pr, fmt.Errorf("level %d: %w", level, err)
		}
		if len(pending) > 0 {
			pr.Level, pr.Pending = level, pending
			return pr, nil
		}
	}
	candidate := tags.Candidate(cfg.Commit, cfg.Profile.Name)
	for _, n := range pr.Order {
		lr := pr.Done[n]
		if err := p.reg.Tag(ctx, lr.Ref, candidate); err != nil {
			return pr, fmt.Errorf("writing candidate tag %q for layer %q: %w", candidate, n, err)
		}
	}
	pr.Report.Candidates, pr.Finished = true, true
	p.logf("candidate tag %s written for %d layer(s)", candidate, len(pr.Done))
	return pr, nil
}

// prepareLevel prepares every layer of a level at once: reused layers are done, the others are returned.
func (p *Pipeline) prepareLevel(ctx context.Context, cfg Config, pl *Plan, g *layers.Graph, pr *Progress, level int) ([]Pending, error) {
	lv := pl.Levels[level]
	results := make([]*Pending, len(lv))
	done := make([]*report.Layer, len(lv))
	for _, planned := range lv {
		if _, ok := pr.Done[planned.Parent]; planned.Parent != "" && !ok {
			return nil, fmt.Errorf("layer %q: parent %q was not built", planned.Name, planned.Parent)
		}
	}
	eg, ectx := errgroup.WithContext(ctx)
	for i, planned := range lv {
		layer, _ := g.Layer(planned.Name)
		parent := pr.Done[layer.Parent]
		eg.Go(func() error {
			pd, reused, err := p.prepareLayer(ectx, cfg, pl, layer, level, parent)
			results[i], done[i] = pd, reused
			return err
		})
	}
	err := eg.Wait()
	var pending []Pending
	for i := range lv {
		if done[i] != nil {
			pr.Done[done[i].Name] = *done[i]
		}
		if results[i] != nil {
			pending = append(pending, *results[i])
		}
	}
	return pending, err
}

// prepareLayer computes a layer's references, labels and input digest; it reuses a signed image with the same
// inputs (returned as done) or returns the build request.
func (p *Pipeline) prepareLayer(ctx context.Context, cfg Config, pl *Plan, layer layers.Layer, level int, parent report.Layer) (*Pending, *report.Layer, error) {
	start := p.now()
	repo := pl.Registry + "/" + layer.Name
	runTag := tags.Run(cfg.RunID, cfg.Profile.Name)
	var from, baseName, parentDigest string
	if layer.Parent == "" {
		r, err := registry.ParseRef(pl.BaseImage)
		if err != nil {
			return nil, nil, err
		}
		from = registry.DigestRef(r.Context().Name(), pl.BaseDigest)
		baseName, parentDigest = pl.BaseImage, pl.BaseDigest
	} else {
		from, baseName, parentDigest = parent.Ref, parent.Ref, parent.Digest
	}
	ctxDir := path.Join(cfg.Dir, layer.Context)
	files, err := buildctx.List(cfg.Source, ctxDir, layer.Containerfile)
	if err != nil {
		return nil, nil, fmt.Errorf("layer %q: %w", layer.Name, err)
	}
	args := map[string]string{}
	for k, v := range cfg.BuildArgs {
		args[k] = v
	}
	args[layers.BaseImageArg] = from
	labels := map[string]string{
		layers.LabelRevision:   cfg.Commit,
		layers.LabelBaseName:   baseName,
		layers.LabelBaseDigest: parentDigest,
		layers.LabelTitle:      layer.Name,
		layers.LabelLayer:      layer.Name,
		layers.LabelProfile:    cfg.Profile.Name,
	}
	if layer.Parent != "" {
		labels[layers.LabelParent] = layer.Parent
	}
	if cfg.SourceURL != "" {
		labels[layers.LabelSource] = cfg.SourceURL
	}
	inDigest, err := p.inputDigest(cfg, layer, ctxDir, files, args, labels, parentDigest)
	if err != nil {
		return nil, nil, err
	}
	labels[layers.LabelInputs] = inDigest
	lr := report.Layer{
		Name: layer.Name, Parent: layer.Parent, Level: level, Repository: repo,
		RunTag: runTag, CandidateTag: tags.Candidate(cfg.Commit, cfg.Profile.Name),
		ParentDigest: parentDigest, BaseName: baseName, InputDigest: inDigest,
		Containerfile: path.Join(cfg.DisplayDir, layer.ContainerfilePath()),
	}
	if lr.ContainerfileDigest, err = fileDigest(cfg.Source, path.Join(cfg.Dir, layer.ContainerfilePath())); err != nil {
		return nil, nil, fmt.Errorf("layer %q: %w", layer.Name, err)
	}
	if cfg.Reuse && !cfg.refresh(layer.Name) {
		reused, from, err := p.reusable(ctx, repo, inDigest)
		if err != nil {
			return nil, nil, fmt.Errorf("layer %q: %w", layer.Name, err)
		}
		if reused != "" {
			if err := p.reg.Tag(ctx, registry.DigestRef(repo, reused), runTag); err != nil {
				return nil, nil, fmt.Errorf("layer %q: tagging the reused image: %w", layer.Name, err)
			}
			lr.Digest, lr.Ref, lr.Status, lr.ReusedFrom = reused, registry.DigestRef(repo, reused), report.StatusReused, from
			lr.DurationMS = p.now().Sub(start).Milliseconds()
			p.logf("[level %d] %s: reused %s (inputs %s unchanged; built at %s)", level, layer.Name, lr.Ref, inputs.Short(inDigest), from)
			return nil, &lr, nil
		}
	}
	req := build.Request{
		Layer:           layer.Name,
		ContextDir:      ctxDir,
		Files:           buildctx.Paths(files),
		ExtraFiles:      cfg.ExtraFiles[layer.Name],
		Containerfile:   layer.Containerfile,
		BuildArgs:       args,
		Labels:          labels,
		Target:          repo + ":" + runTag,
		SourceDateEpoch: cmp.Or(cfg.SourceDateEpoch, cfg.CommitTime),
	}
	if err := req.Validate(); err != nil {
		return nil, nil, err
	}
	p.logf("[level %d] %s: building FROM %s", level, layer.Name, from)
	return &Pending{Layer: lr, Request: req, Since: start}, nil, nil
}

// finishLayer checks a pushed image against the registry, applies an external builder's SourceDateEpoch and
// writes the inputs tag.
func (p *Pipeline) finishLayer(ctx context.Context, cfg Config, pd Pending, res build.Result) (report.Layer, error) {
	req, lr := pd.Request, pd.Layer
	// Trust the registry, not the builder: the run tag must point at the digest the builder reported.
	got, err := p.reg.Digest(ctx, req.Target)
	if err != nil {
		return lr, fmt.Errorf("layer %q: checking the pushed image: %w", lr.Name, err)
	}
	if got != res.Digest {
		return lr, fmt.Errorf("layer %q: the builder reported %s but %s points at %s", lr.Name, res.Digest, req.Target, got)
	}
	digest := res.Digest
	if cfg.External && req.SourceDateEpoch != 0 {
		// The engine's builder keeps only the frontend's image config: the epoch reaches the image's created and
		// history times only by rewriting them after the push.
		if digest, err = p.reg.SetCreated(ctx, registry.DigestRef(lr.Repository, digest), req.Target, time.Unix(req.SourceDateEpoch, 0)); err != nil {
			return lr, fmt.Errorf("layer %q: applying SOURCE_DATE_EPOCH: %w", lr.Name, err)
		}
	}
	// The inputs tag makes the image findable by later runs with the same inputs.
	if err := p.reg.Tag(ctx, registry.DigestRef(lr.Repository, digest), tags.Inputs(lr.InputDigest)); err != nil {
		return lr, fmt.Errorf("layer %q: writing the inputs tag: %w", lr.Name, err)
	}
	lr.Digest, lr.Ref, lr.Status = digest, registry.DigestRef(lr.Repository, digest), report.StatusBuilt
	lr.DurationMS = p.now().Sub(pd.Since).Milliseconds()
	p.logf("[level %d] %s: pushed %s (%s)", lr.Level, lr.Name, lr.Ref, time.Duration(lr.DurationMS)*time.Millisecond)
	return lr, nil
}

// MaxExternalContext bounds the files of one layer's build context an external builder is handed (in its step
// file).
const MaxExternalContext = 32 << 20

// ExternalBuilds are the pending builds as a builder outside this process takes them: a Containerfile mount of a
// secret the run was not given is removed (what BuildKit does for an absent optional secret; Dagger v0.19 would
// give it a random id and never cache the step), and the epoch is a SOURCE_DATE_EPOCH build argument.
func ExternalBuilds(cfg Config, pr *Progress) ([]buildstep.Build, error) {
	given := map[string]bool{}
	for _, s := range cfg.Secrets {
		given[s] = true
	}
	secrets := append([]string(nil), cfg.Secrets...)
	sort.Strings(secrets)
	var out []buildstep.Build
	for _, pd := range pr.Pending {
		req := pd.Request
		b := buildstep.Build{Layer: req.Layer, ContextDir: req.ContextDir, Files: req.Files, Containerfile: req.Containerfile,
			BuildArgs: map[string]string{}, Labels: req.Labels, Secrets: secrets, Target: req.Target, ExtraFiles: map[string]string{}}
		for k, v := range req.ExtraFiles {
			b.ExtraFiles[k] = string(v)
		}
		for k, v := range req.BuildArgs {
			b.BuildArgs[k] = v
		}
		if req.SourceDateEpoch != 0 {
			b.BuildArgs["SOURCE_DATE_EPOCH"] = strconv.FormatInt(req.SourceDateEpoch, 10)
		}
		var total int
		for _, f := range req.Files {
			p := path.Join(req.ContextDir, f)
			data, err := fs.ReadFile(cfg.Source, p)
			if err != nil {
				return nil, fmt.Errorf("layer %q: reading %s: %w", req.Layer, path.Join(cfg.DisplayDir, p), err)
			}
			mode := uint32(0o644)
			if fi, err := fs.Stat(cfg.Source, p); err == nil && fi.Mode().Perm()&0o111 != 0 {
				mode = 0o755
			}
			if total += len(data); total > MaxExternalContext {
				return nil, fmt.Errorf("layer %q: its build context %s is over %d MiB: the Dagger module carries contexts in its step files; keep large files out of it (.containerignore) or build on the host",
					req.Layer, path.Join(cfg.DisplayDir, req.ContextDir), MaxExternalContext>>20)
			}
			b.Context = append(b.Context, buildstep.ContextFile{Path: f, Mode: mode, Data: data})
		}
		cfPath := path.Join(req.ContextDir, req.Containerfile)
		display := path.Join(cfg.DisplayDir, cfPath)
		cf, err := fs.ReadFile(cfg.Source, cfPath)
		if err != nil {
			return nil, fmt.Errorf("layer %q: reading %s: %w", req.Layer, display, err)
		}
		stripped, removed, err := build.WithoutSecretMounts(cf, func(id string) bool { return given[id] })
		if err != nil {
			return nil, fmt.Errorf("layer %q: %s: %w", req.Layer, display, err)
		}
		if len(removed) > 0 {
			b.ExtraFiles[req.Containerfile] = string(stripped)
		}
		out = append(out, b)
	}
	return out, nil
}

// fileDigest is the sha256 digest of a file of the source (sha256:<hex>), for provenance.
func fileDigest(fsys fs.FS, name string) (string, error) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(data)), nil
}
