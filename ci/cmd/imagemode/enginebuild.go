package main

import (
	"context"
	"encoding/json"
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

	"github.com/imagemode/imagemode/ci/build"
	"github.com/imagemode/imagemode/ci/buildstep"
	"github.com/imagemode/imagemode/ci/gha"
	"github.com/imagemode/imagemode/ci/pipeline"
)

// builderEngine is --builder engine: the layers are built by the Dagger module with the engine, one level per step
// file, while this CLI decides what to build (the same pipeline as with buildah: plan, inputs, reuse, checks, tags).
const builderEngine = "engine"

// step runs one step of a build driven by an external builder: the first (no --step-in) begins the run, a later
// one takes the builder's results from --step-in and goes on. The next step file (or the report, once the run is
// over) is written to --step-out, whole or not at all.
func (b *buildFlags) step(ctx context.Context, cfg pipeline.Config, p *pipeline.Pipeline, stdout io.Writer) error {
	var in []byte
	if b.stepIn != "" {
		data, err := os.ReadFile(b.stepIn)
		if err != nil {
			return fmt.Errorf("--step-in: %w", err)
		}
		in = data
	}
	out, runErr, err := b.nextStep(ctx, cfg, p, in)
	if err != nil {
		if b.stepIn != "" {
			return prefixError("--step-in "+strconv.Quote(b.stepIn)+": ", err)
		}
		return err
	}
	if out == nil {
		return runErr
	}
	data, err := out.JSON()
	if err != nil {
		return err
	}
	if err := writeFile(b.stepOut, data, 0o644); err != nil {
		return err
	}
	if out.Report != nil {
		if err := emitReport(out.Report, b.reportFile, b.jsonOut, stdout); err != nil && runErr == nil {
			runErr = err
		}
	}
	return runErr
}

// nextStep is one step: in is the previous step file with the builder's results (nil for the first). It returns
// the next step file (nil when the run could not start: runErr says why) and the run's error so far; err is a
// step file that cannot be taken.
func (b *buildFlags) nextStep(ctx context.Context, cfg pipeline.Config, p *pipeline.Pipeline, in []byte) (out *buildstep.File, runErr, err error) {
	var pr *pipeline.Progress
	if in == nil {
		pr, runErr = p.Begin(ctx, cfg)
	} else {
		prev, err := buildstep.Parse(in)
		if err != nil {
			return nil, nil, err
		}
		if prev.Over() {
			return nil, nil, &usageError{msg: "that run is over"}
		}
		if err := prev.CheckResults(); err != nil {
			return nil, nil, err
		}
		pr = new(pipeline.Progress)
		if err := json.Unmarshal(prev.Progress, pr); err != nil {
			return nil, nil, fmt.Errorf("reading the progress: %w", err)
		}
		targets := map[string]string{}
		for _, bd := range prev.Builds {
			targets[bd.Layer] = bd.Target
		}
		var outcomes []pipeline.Outcome
		for _, r := range prev.Results {
			o := pipeline.Outcome{Layer: r.Layer}
			if r.Error != "" {
				o.Err = fmt.Errorf("building and publishing layer %q to %q: %s", r.Layer, targets[r.Layer], r.Error)
			} else {
				repo := targets[r.Layer][:strings.LastIndex(targets[r.Layer], ":")]
				o.Result = build.Result{Digest: r.Digest, Ref: repo + "@" + r.Digest}
			}
			outcomes = append(outcomes, o)
		}
		pr, runErr = p.Advance(ctx, cfg, pr, outcomes)
	}
	if pr == nil {
		return nil, runErr, nil
	}
	out = &buildstep.File{RunID: pr.Report.RunID, Jobs: b.jobs, Credentials: b.stepCredentials(cfg)}
	if runErr != nil || pr.Finished {
		out.Report = pr.Result(time.Now())
		if runErr != nil {
			out.Error = runErr.Error()
		}
		gha.New().Build(out.Report, runErr)
		return out, runErr, nil
	}
	builds, err := pipeline.ExternalBuilds(cfg, pr)
	if err != nil {
		return nil, nil, err
	}
	progress, err := json.Marshal(pr)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the progress: %w", err)
	}
	out.Builds, out.Progress = builds, progress
	return out, nil, nil
}

// serveSteps serves the steps of one run over HTTP (--step-serve): the Dagger module starts this process once as
// a service and posts each step file to /step — no container per step. The answer is the next step file (200),
// or the CLI's error message (422: the step could not be taken; 500: the run could not start). It serves until
// POST /quit or until the service is stopped.
//
// The port is open before the flags are turned into a configuration: one that cannot be made is the answer to the
// first step (the CLI's own message, with no second container to get it), and the process ends with that error
// once it is out (or after setupErrorGrace).
func (b *buildFlags) serveSteps(ctx context.Context, only []string, stderr io.Writer) error {
	l, err := net.Listen("tcp", b.stepServe)
	if err != nil {
		return fmt.Errorf("--step-serve %s: %w", b.stepServe, err)
	}
	quit := make(chan struct{})
	var quitOnce sync.Once
	end := func() { quitOnce.Do(func() { close(quit) }) }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	// POST /quit ends the process once the answer is out: the module needs no call to stop the service.
	mux.HandleFunc("POST /quit", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "bye")
		end()
	})
	cfg, p, cleanup, setupErr := b.setup(ctx, only, stderr)
	if setupErr != nil {
		mux.HandleFunc("POST /step", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "imagemode build-all: "+setupErr.Error(), http.StatusInternalServerError)
			end()
		})
		grace := time.AfterFunc(setupErrorGrace, end)
		defer grace.Stop()
		if err := serveUntil(ctx, l, mux, quit); err != nil {
			return errors.Join(setupErr, err)
		}
		return setupErr
	}
	defer cleanup()
	var mu sync.Mutex
	mux.HandleFunc("POST /step", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		in, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			http.Error(w, "imagemode build-all: reading the step file: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(in) == 0 {
			in = nil
		}
		out, runErr, err := b.nextStep(r.Context(), cfg, p, in)
		switch {
		case err != nil:
			http.Error(w, "imagemode build-all: the step file: "+err.Error(), http.StatusUnprocessableEntity)
			return
		case out == nil:
			http.Error(w, "imagemode build-all: "+runErr.Error(), http.StatusInternalServerError)
			return
		}
		data, err := out.JSON()
		if err != nil {
			http.Error(w, "imagemode build-all: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if _, err := w.Write(data); err != nil {
			fmt.Fprintf(stderr, "imagemode build-all: answering a step: %v\n", err)
		}
	})
	fmt.Fprintf(stderr, "imagemode build-all: serving the steps of run %s on %s\n", cfg.RunID, l.Addr())
	return serveUntil(ctx, l, mux, quit)
}

// setupErrorGrace is how long a step server whose configuration could not be made waits for the first step, to
// answer it with the error, before it ends.
const setupErrorGrace = 2 * time.Minute

// serveUntil serves h on l until quit is closed (after a short grace, so that the last answer leaves) or ctx ends.
func serveUntil(ctx context.Context, l net.Listener, h http.Handler, quit <-chan struct{}) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		select {
		case <-ctx.Done():
		case <-quit:
			time.Sleep(50 * time.Millisecond) // let the last answer leave
		}
		srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("--step-serve: %w", err)
	}
	return nil
}

// stepCredentials says which registry host each credential is for.
func (b *buildFlags) stepCredentials(cfg pipeline.Config) []buildstep.Credential {
	var out []buildstep.Credential
	if b.user != "" {
		host, _, _ := strings.Cut(b.registry, "/")
		out = append(out, buildstep.Credential{For: buildstep.ForRegistry, Host: host})
	}
	if b.baseUser != "" {
		host, _, _ := strings.Cut(cfg.Profile.BaseImage, "/")
		out = append(out, buildstep.Credential{For: buildstep.ForBase, Host: host})
	}
	return out
}

// writeFile writes data to a temporary file beside path and renames it into place: whole or not at all.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(path, data, mode)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// prefixError puts prefix before err's message, keeping a usage error a usage error (exit 2).
func prefixError(prefix string, err error) error {
	var ue *usageError
	if errors.As(err, &ue) {
		return &usageError{msg: prefix + ue.msg}
	}
	return fmt.Errorf("%s%w", prefix, err)
}
