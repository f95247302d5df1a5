package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/imagemode/imagemode/ci/build"
	"github.com/imagemode/imagemode/ci/build/buildah"
	"github.com/imagemode/imagemode/ci/gha"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/pipeline"
	"github.com/imagemode/imagemode/ci/policy"
	"github.com/imagemode/imagemode/ci/profile"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/tags"
)

// graphFlags select the containerfiles directory and the profile.
type graphFlags struct {
	dir       string
	profile   string
	baseImage string
}

func (g *graphFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.dir, "dir", "containerfiles", mhelp("new.dir", "On the host: a path."))
	fs.StringVar(&g.profile, "profile", mdefault("new.os-profile"), mhelp("new.os-profile"))
	fs.StringVar(&g.baseImage, "base-image", "", mhelp("new.base-image"))
}

func (g *graphFlags) config() (pipeline.Config, error) {
	prof, err := profile.Resolve(g.profile, g.baseImage)
	if err != nil {
		return pipeline.Config{}, &usageError{msg: err.Error()}
	}
	st, err := os.Stat(g.dir)
	if err != nil {
		return pipeline.Config{}, fmt.Errorf("--dir %q: %w", g.dir, err)
	}
	if !st.IsDir() {
		return pipeline.Config{}, fmt.Errorf("--dir %q is not a directory", g.dir)
	}
	return pipeline.Config{Source: os.DirFS(g.dir), Dir: ".", DisplayDir: g.dir, Profile: prof}, nil
}

func runLint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("lint", "Validate the layer graph (unknown parent, cycle, duplicate name, missing Containerfile) and check\nevery Containerfile: final stage FROM ${BASE_IMAGE}, RUN bootc container lint last, nothing copied under /var.", stderr)
	var g graphFlags
	g.register(fs)
	jsonOut := fs.Bool("json", false, "print findings as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	err := layers.Check(os.DirFS(g.dir), ".", g.dir)
	if *jsonOut {
		findings := []layers.Finding{}
		var le *layers.LintError
		if errors.As(err, &le) {
			findings = le.Findings
		}
		out := map[string]any{"ok": err == nil, "findings": findings}
		if err != nil && le == nil {
			out["error"] = err.Error()
		}
		if werr := writeJSON(stdout, out); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	if !*jsonOut {
		fmt.Fprintf(stdout, "%s: layer graph and Containerfiles OK\n", g.dir)
	}
	return nil
}

func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plan", "Print the build levels (layers of one level build in parallel), each layer's parent and, with\n--registry/--commit/--run-id, the references a run would write. With --resolve, ask the registry for the\nbase image digest.", stderr)
	var g graphFlags
	g.register(fs)
	reg := fs.String("registry", "", mhelp("new.registry"))
	commit := fs.String("commit", "", mhelp("plan.commit"))
	runID := fs.String("run-id", "", mhelp("plan.run-id"))
	resolve := fs.Bool("resolve", false, mhelp("plan.resolve"))
	jsonOut := fs.Bool("json", false, "print the plan as JSON")
	var rf registryFlags
	rf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := g.config()
	if err != nil {
		return err
	}
	cfg.Registry, cfg.Commit, cfg.RunID = *reg, *commit, *runID
	client, err := rf.client()
	if err != nil {
		return err
	}
	pl, err := pipeline.New(nil, client).Plan(ctx, cfg, pipeline.PlanOptions{Resolve: *resolve})
	if err != nil {
		return err
	}
	if *jsonOut {
		return writeJSON(stdout, pl)
	}
	fmt.Fprintf(stdout, "profile %s: base %s", pl.Profile.Name, pl.BaseImage)
	if pl.BaseDigest != "" {
		fmt.Fprintf(stdout, " (%s)", pl.BaseDigest)
	}
	fmt.Fprintln(stdout)
	for i, lv := range pl.Levels {
		fmt.Fprintf(stdout, "level %d:\n", i)
		for _, l := range lv {
			from := "the profile's base image"
			if l.Parent != "" {
				from = l.Parent
			}
			fmt.Fprintf(stdout, "  %-10s FROM %-24s %s\n", l.Name, from, l.Containerfile)
			if l.Repository != "" {
				fmt.Fprintf(stdout, "  %-10s -> %s:%s\n", "", l.Repository, firstNonEmpty(l.CandidateTag, l.RunTag, "<tag>"))
			}
		}
	}
	return nil
}

// registryFlags are the credentials of the push registry and of the base image's registry.
type registryFlags struct {
	user, passFile         string
	baseUser, basePassFile string
	registryHost           string
}

func (r *registryFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.user, "registry-username", "", mhelp("new.registry-username", "On the host the password comes from --registry-password-file or $IMAGEMODE_REGISTRY_PASSWORD; default: your docker/podman login."))
	fs.StringVar(&r.passFile, "registry-password-file", "", mhelp("new.registry-password", "A file on the host (default: $IMAGEMODE_REGISTRY_PASSWORD)."))
	fs.StringVar(&r.baseUser, "base-registry-username", "", mhelp("new.base-registry-username"))
	fs.StringVar(&r.basePassFile, "base-registry-password-file", "", mhelp("new.base-registry-password", "A file on the host (default: $IMAGEMODE_BASE_REGISTRY_PASSWORD)."))
}

type credential struct{ host, user, pass string }

func (r *registryFlags) credentials(registryRef, baseImage string) ([]credential, error) {
	var out []credential
	add := func(ref, user, file, env, flagName string) error {
		if user == "" {
			return nil
		}
		pass, err := secretFrom(file, env)
		if err != nil {
			return fmt.Errorf("%s: %w", flagName, err)
		}
		if pass == "" {
			return &usageError{msg: fmt.Sprintf("%s given without a password: pass %s-password-file or set $%s", flagName, strings.TrimSuffix(flagName, "-username"), env)}
		}
		host, _, _ := strings.Cut(ref, "/")
		out = append(out, credential{host: host, user: user, pass: pass})
		return nil
	}
	if err := add(registryRef, r.user, r.passFile, "IMAGEMODE_REGISTRY_PASSWORD", "--registry-username"); err != nil {
		return nil, err
	}
	if err := add(baseImage, r.baseUser, r.basePassFile, "IMAGEMODE_BASE_REGISTRY_PASSWORD", "--base-registry-username"); err != nil {
		return nil, err
	}
	return out, nil
}

func (r *registryFlags) client(creds ...credential) (*registry.Client, error) {
	var opts []registry.Option
	for _, c := range creds {
		opts = append(opts, registry.WithCredentials(c.host, c.user, c.pass))
	}
	return registry.New(opts...), nil
}

func secretFrom(file, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading secret file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return os.Getenv(env), nil
}

// buildFlags are the flags of build-all and build.
type buildFlags struct {
	graphFlags
	registryFlags
	registry        string
	commit          string
	runID           string
	builder         string
	buildArgs       multiFlag
	jobs            int
	reportFile      string
	jsonOut         bool
	sourceURL       string
	entitlementCert string
	entitlementKey  string
	rhsmCA          string
	passwordHash    string
	containersConf  string
	buildahRoot     string
	buildahRunRoot  string
	trustKey        string
	trustedNS       multiFlag
	trustMode       string
	trustAllowBase  bool
	reuse           bool
	publicKey       string
	refresh         multiFlag
	inputsKeyFile   string
	epoch           int64
	stepIn          string
	stepOut         string
	stepServe       string
}

func (b *buildFlags) register(fs *flag.FlagSet) {
	b.graphFlags.register(fs)
	b.registryFlags.register(fs)
	fs.StringVar(&b.registry, "registry", "", mhelp("new.registry"))
	fs.StringVar(&b.commit, "commit", "", mhelp("build-all.commit", "On the host: of the checkout holding --dir."))
	fs.StringVar(&b.runID, "run-id", "", mhelp("build-all.run-id"))
	fs.StringVar(&b.builder, "builder", "buildah", "image builder: buildah on this host, or engine: the Dagger module builds the layers of each step file (--step-out) and hands it back (--step-in)")
	fs.StringVar(&b.stepIn, "step-in", "", "with --builder engine: the previous step file, with the builder's results (none for the first step)")
	fs.StringVar(&b.stepOut, "step-out", "", "with --builder engine: where the next step file is written (the layers to build, or the report at the end)")
	fs.StringVar(&b.stepServe, "step-serve", "", "with --builder engine: serve the steps over HTTP on this address instead (POST /step with the previous step file, none for the first; the next comes back): one process for the whole run")
	fs.Var(&b.buildArgs, "build-arg", mhelp("build-all.build-arg"))
	fs.IntVar(&b.jobs, "jobs", 0, mhelp("build-all.jobs"))
	fs.StringVar(&b.reportFile, "report", "", "also write the JSON report to this file")
	fs.BoolVar(&b.jsonOut, "json", false, "print the JSON report instead of the table")
	fs.StringVar(&b.sourceURL, "source-url", "", mhelp("build-all.source-url"))
	fs.StringVar(&b.entitlementCert, "entitlement-cert", "", mhelp("build-all.entitlement-cert", "File on the host."))
	fs.StringVar(&b.entitlementKey, "entitlement-key", "", mhelp("build-all.entitlement-key", "File on the host."))
	fs.StringVar(&b.rhsmCA, "rhsm-ca", "", mhelp("build-all.rhsm-ca", "File on the host."))
	fs.StringVar(&b.passwordHash, "password-hash-file", "", mhelp("build-all.password-hash", "File on the host."))
	fs.StringVar(&b.containersConf, "containers-conf", os.Getenv("CONTAINERS_CONF"), "containers.conf for buildah (e.g. runtime runc and lower default ulimits)")
	fs.StringVar(&b.buildahRoot, "buildah-root", "", "buildah storage root (default: buildah's own)")
	fs.StringVar(&b.buildahRunRoot, "buildah-runroot", "", "buildah run root (default: buildah's own)")
	fs.StringVar(&b.trustKey, "trust-key", "", mhelp("new.trust-key", "File on the host."))
	fs.Var(&b.trustedNS, "trusted-namespace", mhelp("new.trusted-namespace"))
	fs.StringVar(&b.trustMode, "trust-mode", mdefault("new.trust-mode"), mhelp("new.trust-mode"))
	fs.BoolVar(&b.trustAllowBase, "trust-allow-base", false, mhelp("new.trust-allow-base"))
	fs.BoolVar(&b.reuse, "reuse", true, mhelp("build-all.reuse"))
	fs.StringVar(&b.publicKey, "public-key", "", mhelp("new.public-key", "File on the host."))
	fs.Var(&b.refresh, "refresh", mhelp("build-all.refresh", "Commas separate layers too."))
	fs.Int64Var(&b.epoch, "source-date-epoch", -1, mhelp("build-all.source-date-epoch", "On the host the default is the commit time when --commit comes from git."))
	fs.StringVar(&b.inputsKeyFile, "inputs-key-file", "", mhelp("build-all.inputs-key", "A file on the host (default: $IMAGEMODE_INPUTS_KEY)."))
}

// trust returns the host trust configuration, or nil without --trust-key.
func (b *buildFlags) trust() (*policy.Config, error) {
	if b.trustKey == "" {
		if len(b.trustedNS) > 0 || b.trustAllowBase {
			return nil, &usageError{msg: "--trusted-namespace and --trust-allow-base need --trust-key"}
		}
		return nil, nil
	}
	pub, err := os.ReadFile(b.trustKey)
	if err != nil {
		return nil, &usageError{msg: fmt.Sprintf("--trust-key: %v", err)}
	}
	ns := []string(b.trustedNS)
	if len(ns) == 0 {
		ns = []string{b.registry}
	}
	c := &policy.Config{PublicKey: pub, Namespaces: ns, Mode: b.trustMode, AllowBase: b.trustAllowBase}
	check := *c
	check.BaseRepository = "registry.example/base" // the pipeline fills in the profile's base repository
	if err := check.Validate(); err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	return c, nil
}

func runBuildAll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("build-all", "Build every layer of the graph in dependency order: the SOE, then httpd and database in parallel, then\nhomepage. Each layer is pushed to <registry>/<layer>:build-<run-id>-<profile> and its children are built FROM\nits exact digest. Candidate tags sha-<commit>-<profile> are written only when every layer succeeded.", stderr)
	var b buildFlags
	b.register(fs)
	var only multiFlag
	fs.Var(&only, "layer", mhelp("build-all.layer", "Commas separate layers too."))
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var layers []string
	for _, o := range only {
		for _, l := range strings.Split(o, ",") {
			if l = strings.TrimSpace(l); l != "" {
				layers = append(layers, l)
			}
		}
	}
	return b.run(ctx, layers, stdout, stderr)
}

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("build", "Build one layer and its ancestors (e.g. --layer homepage builds soe, httpd, homepage).", stderr)
	var b buildFlags
	b.register(fs)
	layer := fs.String("layer", "", mhelp("build-all.layer", "On the host one layer, required."))
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *layer == "" {
		return &usageError{msg: "--layer is required"}
	}
	return b.run(ctx, []string{*layer}, stdout, stderr)
}

func (b *buildFlags) run(ctx context.Context, only []string, stdout, stderr io.Writer) error {
	if b.builder == builderEngine && b.stepServe != "" {
		return b.serveSteps(ctx, only, stderr)
	}
	cfg, p, cleanup, err := b.setup(ctx, only, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	if b.builder == builderEngine {
		return b.step(ctx, cfg, p, stdout)
	}
	rep, runErr := p.BuildAll(ctx, cfg)
	gha.New().Build(rep, runErr)
	if rep != nil {
		if err := emitReport(rep, b.reportFile, b.jsonOut, stdout); err != nil && runErr == nil {
			runErr = err
		}
	}
	return runErr
}

// setup turns the flags into a pipeline configuration and a pipeline building with buildah; cleanup removes
// temporary credential files.
func (b *buildFlags) setup(ctx context.Context, only []string, stderr io.Writer) (cfg pipeline.Config, p *pipeline.Pipeline, cleanup func(), err error) {
	var cleanups []func()
	cleanup = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	if err = checkReportFile(b.reportFile); err != nil {
		return cfg, nil, cleanup, err
	}
	if cfg, err = b.config(); err != nil {
		return cfg, nil, cleanup, err
	}
	if verr := registry.ValidatePrefix(b.registry); verr != nil {
		return cfg, nil, cleanup, &usageError{msg: verr.Error()}
	}
	switch b.builder {
	case "buildah":
		if b.stepIn != "" || b.stepOut != "" || b.stepServe != "" {
			return cfg, nil, cleanup, &usageError{msg: "--step-in, --step-out and --step-serve go with --builder engine"}
		}
	case builderEngine:
		switch {
		case b.stepServe != "" && (b.stepIn != "" || b.stepOut != ""):
			return cfg, nil, cleanup, &usageError{msg: "--step-serve takes the step files over HTTP: no --step-in or --step-out with it"}
		case b.stepServe == "" && b.stepOut == "":
			return cfg, nil, cleanup, &usageError{msg: "--builder engine needs --step-out or --step-serve (the Dagger module drives it: `dagger call build-all`)"}
		case b.stepOut != "":
			if err = checkReportFile(b.stepOut); err != nil {
				return cfg, nil, cleanup, err
			}
		}
		cfg.External = true
	default:
		return cfg, nil, cleanup, &usageError{msg: fmt.Sprintf("--builder %q: buildah (this host) or engine (the Dagger module, `dagger call build-all`)", b.builder)}
	}
	cfg.Registry, cfg.Layers, cfg.SourceURL = b.registry, only, b.sourceURL
	cfg.Commit = b.commit
	if cfg.Commit == "" {
		c, t, err := gitHead(ctx, b.dir)
		if err != nil {
			return cfg, nil, cleanup, &usageError{msg: fmt.Sprintf("--commit is required: %v", err)}
		}
		cfg.Commit, cfg.CommitTime = c, t
	}
	if b.epoch >= 0 {
		cfg.SourceDateEpoch, cfg.CommitTime = b.epoch, 0
	}
	cfg.RunID = b.runID
	if cfg.RunID == "" {
		cfg.RunID = tags.NewRunID(time.Now())
	}
	if cfg.Trust, err = b.trust(); err != nil {
		return cfg, nil, cleanup, err
	}
	cfg.BuildArgs = map[string]string{}
	for _, kv := range b.buildArgs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return cfg, nil, cleanup, &usageError{msg: fmt.Sprintf("--build-arg %q: want KEY=VALUE", kv)}
		}
		cfg.BuildArgs[k] = v
	}

	creds, err := b.credentials(b.registry, cfg.Profile.BaseImage)
	if err != nil {
		return cfg, nil, cleanup, err
	}
	for _, c := range creds {
		cfg.RegistryAuth = append(cfg.RegistryAuth, c.host)
	}
	bopts := []buildah.Option{buildah.WithLog(stderr)}
	for _, s := range []struct{ id, file, flag string }{
		{profile.SecretEntitlementCert, b.entitlementCert, "--entitlement-cert"},
		{profile.SecretEntitlementKey, b.entitlementKey, "--entitlement-key"},
		{profile.SecretRHSMCA, b.rhsmCA, "--rhsm-ca"},
		{profile.SecretPasswordHash, b.passwordHash, "--password-hash-file"},
	} {
		if s.file == "" {
			continue
		}
		if _, err := os.Stat(s.file); err != nil {
			return cfg, nil, cleanup, &usageError{msg: fmt.Sprintf("%s: %v", s.flag, err)}
		}
		bopts = append(bopts, buildah.WithSecretFile(s.id, s.file))
		cfg.Secrets = append(cfg.Secrets, s.id)
	}
	if b.containersConf != "" {
		bopts = append(bopts, buildah.WithContainersConf(b.containersConf))
	}
	if b.buildahRoot != "" || b.buildahRunRoot != "" {
		bopts = append(bopts, buildah.WithStorage(b.buildahRoot, b.buildahRunRoot))
	}
	if len(creds) > 0 {
		authFile, rm, err := writeAuthFile(creds)
		if err != nil {
			return cfg, nil, cleanup, err
		}
		cleanups = append(cleanups, rm)
		bopts = append(bopts, buildah.WithAuthFile(authFile))
	}
	if b.passwordHash != "" {
		v, err := os.ReadFile(b.passwordHash)
		if err != nil {
			return cfg, nil, cleanup, &usageError{msg: fmt.Sprintf("--password-hash-file: %v", err)}
		}
		cfg.SecretInputs = map[string][]byte{profile.SecretPasswordHash: v}
	}
	inKey, err := secretFrom(b.inputsKeyFile, "IMAGEMODE_INPUTS_KEY")
	if err != nil {
		return cfg, nil, cleanup, fmt.Errorf("--inputs-key-file: %w", err)
	}
	cfg.InputsKey = []byte(inKey)
	cfg.Reuse = b.reuse
	for _, r := range b.refresh {
		for _, l := range strings.Split(r, ",") {
			if l = strings.TrimSpace(l); l != "" {
				cfg.Refresh = append(cfg.Refresh, l)
			}
		}
	}
	var builder build.Builder
	if b.builder == "buildah" {
		bb, err := buildah.New(cfg.Source, bopts...)
		if err != nil {
			return cfg, nil, cleanup, err
		}
		cleanups = append(cleanups, func() {
			if err := bb.Close(); err != nil {
				fmt.Fprintf(stderr, "imagemode: %v\n", err)
			}
		})
		builder = bb
	}
	client, err := b.client(creds...)
	if err != nil {
		return cfg, nil, cleanup, err
	}
	popts := []pipeline.Option{pipeline.WithLog(stderr), pipeline.WithJobs(b.jobs)}
	if b.publicKey != "" {
		pub, err := os.ReadFile(b.publicKey)
		if err != nil {
			return cfg, nil, cleanup, &usageError{msg: fmt.Sprintf("--public-key: %v", err)}
		}
		v, err := signing.NewKeyVerifier(pub, client)
		if err != nil {
			return cfg, nil, cleanup, err
		}
		popts = append(popts, pipeline.WithVerifier(v))
	}
	p = pipeline.New(builder, client, popts...)
	return cfg, p, cleanup, nil
}

func emitReport(rep *report.Report, file string, jsonOut bool, stdout io.Writer) error {
	data, err := rep.JSON()
	if err != nil {
		return err
	}
	return output(stdout, file, jsonOut, data, rep.Table)
}

// output writes a verb's JSON report to file (when set) and prints either the JSON or the text rendering.
func output(stdout io.Writer, file string, jsonOut bool, data []byte, text func() string) error {
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	if file != "" {
		// A temporary file renamed into place: a report is there whole or not at all.
		tmp, err := writeTemp(file, data, 0o644)
		if err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
		if err := os.Rename(tmp, file); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("writing the report to %q: %w", file, err)
		}
	}
	var err error
	if jsonOut {
		_, err = stdout.Write(data)
	} else {
		_, err = io.WriteString(stdout, text())
	}
	if err != nil {
		return fmt.Errorf("printing the report: %w", err)
	}
	return nil
}

// checkReportFile fails early, before anything is pushed, signed or tagged, when --report cannot be written.
func checkReportFile(file string) error {
	if file == "" {
		return nil
	}
	if fi, err := os.Stat(file); err == nil && fi.IsDir() {
		return &usageError{msg: fmt.Sprintf("--report %q is a directory", file)}
	}
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".check-*")
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--report %q cannot be written: %v", file, err)}
	}
	name := f.Name()
	return errors.Join(f.Close(), os.Remove(name))
}

// writeAuthFile writes a containers auth.json (mode 0600) for buildah and returns a function removing it.
func writeAuthFile(creds []credential) (string, func(), error) {
	m := map[string][2]string{}
	for _, c := range creds {
		m[c.host] = [2]string{c.user, c.pass}
	}
	data, err := registry.AuthJSON(m)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "imagemode-auth-")
	if err != nil {
		return "", nil, fmt.Errorf("creating a temporary auth file: %w", err)
	}
	path := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("writing a temporary auth file: %w", err)
	}
	return path, func() { os.RemoveAll(dir) }, nil
}

// gitHead returns the commit and commit time of the checkout holding dir.
func gitHead(ctx context.Context, dir string) (string, int64, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "log", "-1", "--format=%H %ct").Output()
	if err != nil {
		return "", 0, fmt.Errorf("%q is not in a git checkout with a commit (git log: %v)", dir, err)
	}
	sha, ts, ok := strings.Cut(strings.TrimSpace(string(out)), " ")
	if !ok {
		return "", 0, fmt.Errorf("unexpected git output %q", out)
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("parsing the commit time %q: %w", ts, err)
	}
	return sha, t, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
