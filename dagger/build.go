package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"dagger/imagemode/internal/dagger"

	"github.com/imagemode/imagemode/ci/buildstep"
	"github.com/imagemode/imagemode/ci/profile"
)

// buildSecret is a build secret: the CLI flag that hands it to the CLI (which checks the profile's needs and
// digests the password hash) and the id the Containerfiles mount it by.
type buildSecret struct {
	flag, id string
	secret   *dagger.Secret
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
	for _, r := range [][2]string{{"--registry", m.Registry}, {"--base-image", m.BaseImage}} {
		if err := checkReachable(r[0], r[1]); err != nil {
			return nil, fail(err)
		}
	}
	if commit == "" {
		if m.Git == nil {
			return nil, fail(fmt.Errorf("--commit is required when no git checkout is available"))
		}
		c, err := m.Git.Head().Commit(ctx)
		if err != nil {
			return nil, fail(fmt.Errorf("reading the commit of the checkout (pass --commit): %w", err))
		}
		commit = c
	}
	secrets := []buildSecret{
		{"--entitlement-cert", profile.SecretEntitlementCert, entitlementCert}, {"--entitlement-key", profile.SecretEntitlementKey, entitlementKey},
		{"--rhsm-ca", profile.SecretRHSMCA, rhsmCa}, {"--password-hash-file", profile.SecretPasswordHash, passwordHash},
	}
	// The arguments every step takes: the build's configuration is the CLI's, from the same flags as on a host.
	step := func() *invocation {
		in := m.cli("build-all", "--builder", "engine", "--registry", m.Registry,
			"--commit", commit, "--source-date-epoch", strconv.Itoa(sourceDateEpoch), "--jobs", strconv.Itoa(jobs),
			"--reuse="+strconv.FormatBool(reuse), "--trust-mode", m.TrustMode).
			withDir(m).withProfile(m).withRegistryAuth(m).withBaseAuth(m)
		in.ctr = in.ctr.WithDirectory("/work/out", dag.Directory())
		in.fresh = true
		for _, a := range [][2]string{{"--source-url", sourceURL}} {
			if a[1] != "" {
				in.arg(a[0], a[1])
			}
		}
		for _, l := range layer {
			in.arg("--layer", l)
		}
		for _, a := range buildArg {
			in.arg("--build-arg", a)
		}
		for _, r := range refresh {
			in.arg("--refresh", r)
		}
		for _, ns := range m.TrustedNamespace {
			in.arg("--trusted-namespace", ns)
		}
		if m.TrustAllowBase {
			in.arg("--trust-allow-base")
		}
		for _, s := range secrets {
			in.withSecret(s.flag, s.id, s.secret)
		}
		in.withSecret("--inputs-key-file", "inputs-key", inputsKey)
		in.withKeyFile("--trust-key", "trust.pub", m.TrustKey).withKeyFile("--public-key", "cosign.pub", m.PublicKey)
		return in
	}
	// The CLI serves the run's steps from one process (a service of the engine): no container per step.
	in := step()
	if runID != "" {
		in.arg("--run-id", runID)
	}
	steps, err := m.startSteps(ctx, in)
	if err != nil {
		return nil, fail(err)
	}
	defer steps.stop()
	var body []byte
	for {
		next, err := steps.post(ctx, body)
		if err != nil {
			return nil, fail(err)
		}
		if next.Over() {
			if next.Error != "" {
				return nil, fail(fmt.Errorf("imagemode build-all: %s\n\n%s", next.Error, next.Report.Table()))
			}
			return m.newRun(next.Report)
		}
		next.Results = m.buildLayers(ctx, next, secrets)
		if body, err = next.JSON(); err != nil {
			return nil, fail(err)
		}
	}
}

// stepPort is the port the CLI serves a run's steps on (build-all --step-serve).
const stepPort = 7777

// stepService is `imagemode build-all --builder engine --step-serve` running as a service for one run.
type stepService struct {
	svc *dagger.Service
	url string
	// stopCtx outlives a cancelled call, so that the service is stopped anyway.
	stopCtx context.Context
}

// startSteps starts the CLI's step server for the invocation in (all flags of the run). The CLI opens its port
// before it makes its configuration, so flags it cannot make one of are the answer to the first step, with the
// CLI's own message. When the process does not start or ends before it listens (a toolbox whose CLI does not know
// a flag, say), the same invocation is run once as a step to get that message.
func (m *Imagemode) startSteps(ctx context.Context, in *invocation) (*stepService, error) {
	id, err := nonce()
	if err != nil {
		return nil, err
	}
	argv := append([]string{cliPath, in.verb}, in.args...)
	argv = append(argv, "--step-serve", ":"+strconv.Itoa(stepPort))
	svc, err := in.ctr.WithEnvVariable("IMAGEMODE_CALL", id).WithExposedPort(stepPort).
		AsService(dagger.ContainerAsServiceOpts{Args: argv}).Start(ctx)
	if err != nil {
		in.arg("--step-out", "/work/out/step.json")
		in.fresh = true
		if _, rerr := in.run(ctx); rerr != nil {
			return nil, rerr
		}
		return nil, fmt.Errorf("starting imagemode build-all --step-serve: %w", err)
	}
	url, err := svc.Endpoint(ctx, dagger.ServiceEndpointOpts{Port: stepPort, Scheme: "http"})
	if err != nil {
		return nil, fmt.Errorf("the address of the step server: %w", err)
	}
	return &stepService{svc: svc, url: url, stopCtx: context.WithoutCancel(ctx)}, nil
}

// post sends the previous step file (nil for the first step) and returns the next. A request that never reached
// the server — its name did not resolve, or its port did not answer — is sent again a few times: the engine's DNS
// for service names has been seen to fail for a moment in the middle of a run (docs/engine.md). The server got
// nothing then, so nothing is done twice.
func (s *stepService) post(ctx context.Context, body []byte) (*buildstep.File, error) {
	var resp *http.Response
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/step", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if resp, err = http.DefaultClient.Do(req); err == nil {
			break
		}
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" || attempt == stepDialAttempts || ctx.Err() != nil {
			return nil, fmt.Errorf("asking the step server for the next step: %w", err)
		}
		fmt.Fprintf(os.Stderr, "asking the step server for the next step: %v; again in %s\n", err, wait)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("asking the step server for the next step: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the next step: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(strings.TrimSpace(string(data))) // the CLI's own message
	}
	next, err := buildstep.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("the step server answered: %w", err)
	}
	return next, nil
}

// stepDialAttempts is how many times a step is sent while the server cannot be reached (about 7 s in all).
const stepDialAttempts = 8

// stop asks the step server to end (POST /quit): faster than stopping the service, which the engine does anyway
// when the session ends. A server that already ended (it does after answering a configuration error) is stopped
// as a service.
func (s *stepService) stop() {
	ctx, cancel := context.WithTimeout(s.stopCtx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/quit", nil)
	if err == nil {
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return
		}
	}
	if _, serr := s.svc.Stop(s.stopCtx); serr != nil {
		fmt.Fprintf(os.Stderr, "ending the step server: %v; stopping its service: %v\n", err, serr)
	}
}

// buildLayers builds and pushes a step's layers with the engine (DockerBuild, Publish), at most step.Jobs at once,
// each in its own span; a failure is that layer's result, not the others'.
func (m *Imagemode) buildLayers(ctx context.Context, step *buildstep.File, secrets []buildSecret) []buildstep.Result {
	out := make([]buildstep.Result, len(step.Builds))
	limit := len(step.Builds)
	if step.Jobs > 0 {
		limit = step.Jobs
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i, b := range step.Builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			digest, err := m.buildLayer(ctx, step, b, secrets)
			if err != nil {
				out[i] = buildstep.Result{Layer: b.Layer, Error: err.Error()}
				return
			}
			out[i] = buildstep.Result{Layer: b.Layer, Digest: digest}
		}()
	}
	wg.Wait()
	return out
}

func (m *Imagemode) buildLayer(ctx context.Context, step *buildstep.File, b buildstep.Build, secrets []buildSecret) (digest string, err error) {
	ctx, span := Tracer().Start(ctx, "build layer "+b.Layer)
	defer func() {
		if err != nil {
			span.RecordError(err)
		}
		span.End()
	}()
	// The context comes in the step file, not from the --dir argument: Dagger 1.0.0-beta.10 re-reads a directory
	// argument from the module's own working directory when it publishes what was built from it (docs/engine.md).
	dir := dag.Directory()
	var binary []buildstep.ContextFile
	for _, f := range b.Context {
		if !utf8.Valid(f.Data) {
			binary = append(binary, f) // the API's strings are UTF-8: these go through base64
			continue
		}
		dir = dir.WithNewFile(f.Path, string(f.Data), dagger.DirectoryWithNewFileOpts{Permissions: int(f.Mode)})
	}
	if len(binary) > 0 {
		c := dag.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From(defaultQEMUImage).WithDirectory("/ctx", dir)
		var script strings.Builder
		script.WriteString("set -e\n")
		for i, f := range binary {
			if strings.ContainsAny(f.Path, "'\n") {
				return "", fmt.Errorf("layer %s: the context file name %q cannot be written", b.Layer, f.Path)
			}
			src := "/b64/" + strconv.Itoa(i)
			c = c.WithNewFile(src, base64.StdEncoding.EncodeToString(f.Data))
			dst := "/ctx/" + f.Path
			fmt.Fprintf(&script, "mkdir -p \"$(dirname '%[1]s')\" && base64 -d %[2]s > '%[1]s' && chmod %[3]o '%[1]s'\n", dst, src, f.Mode)
		}
		dir = c.WithExec([]string{"sh", "-c", script.String()}).Directory("/ctx")
	}
	for _, p := range buildstep.SortedKeys(b.ExtraFiles) {
		dir = dir.WithNewFile(p, b.ExtraFiles[p])
	}
	var pass []*dagger.Secret
	for _, id := range b.Secrets {
		for _, s := range secrets {
			if s.id == id && s.secret != nil {
				named, err := namedSecret(ctx, id, s.secret)
				if err != nil {
					return "", err
				}
				pass = append(pass, named)
			}
		}
	}
	var args []dagger.BuildArg
	for _, k := range buildstep.SortedKeys(b.BuildArgs) {
		args = append(args, dagger.BuildArg{Name: k, Value: b.BuildArgs[k]})
	}
	ctr := dir.DockerBuild(dagger.DirectoryDockerBuildOpts{Dockerfile: b.Containerfile, Platform: "linux/amd64", BuildArgs: args, Secrets: pass})
	for _, k := range buildstep.SortedKeys(b.Labels) {
		ctr = ctr.WithLabel(k, b.Labels[k])
	}
	for _, c := range step.Credentials {
		switch {
		case c.For == buildstep.ForRegistry && m.RegistryPassword != nil:
			ctr = ctr.WithRegistryAuth(c.Host, m.RegistryUsername, m.RegistryPassword)
		case c.For == buildstep.ForBase && m.BaseRegistryPassword != nil:
			ctr = ctr.WithRegistryAuth(c.Host, m.BaseRegistryUsername, m.BaseRegistryPassword)
		}
	}
	published, err := ctr.Publish(ctx, b.Target)
	if err != nil {
		return "", err
	}
	_, digest, ok := strings.Cut(published, "@")
	if !ok || !strings.HasPrefix(digest, "sha256:") {
		return "", fmt.Errorf("the engine published %q without a digest", published)
	}
	return digest, nil
}

// namedSecret returns a secret named id: the engine mounts a Containerfile's `RUN --mount=type=secret,id=<id>` from
// the secret of that name, while secrets passed on the command line (env:, file:, cmd:) carry names of their own.
func namedSecret(ctx context.Context, id string, s *dagger.Secret) (*dagger.Secret, error) {
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
	return dag.SetSecret(id, plain), nil
}
