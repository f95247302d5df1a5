package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
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
	var pr *pipeline.Progress
	var runErr error
	if b.stepIn == "" {
		pr, runErr = p.Begin(ctx, cfg)
	} else {
		data, err := os.ReadFile(b.stepIn)
		if err != nil {
			return fmt.Errorf("--step-in: %w", err)
		}
		in, err := buildstep.Parse(data)
		if err != nil {
			return fmt.Errorf("--step-in %q: %w", b.stepIn, err)
		}
		if in.Over() {
			return &usageError{msg: fmt.Sprintf("--step-in %q: that run is over", b.stepIn)}
		}
		if err := in.CheckResults(); err != nil {
			return fmt.Errorf("--step-in %q: %w", b.stepIn, err)
		}
		pr = new(pipeline.Progress)
		if err := json.Unmarshal(in.Progress, pr); err != nil {
			return fmt.Errorf("--step-in %q: reading the progress: %w", b.stepIn, err)
		}
		targets := map[string]string{}
		for _, bd := range in.Builds {
			targets[bd.Layer] = bd.Target
		}
		var outcomes []pipeline.Outcome
		for _, r := range in.Results {
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
		return runErr
	}
	out := buildstep.File{RunID: pr.Report.RunID, Jobs: b.jobs, Credentials: b.stepCredentials(cfg)}
	if runErr != nil || pr.Finished {
		out.Report = pr.Result(time.Now())
		if runErr != nil {
			out.Error = runErr.Error()
		}
	} else {
		builds, err := pipeline.ExternalBuilds(cfg, pr)
		if err != nil {
			return err
		}
		progress, err := json.Marshal(pr)
		if err != nil {
			return fmt.Errorf("encoding the progress: %w", err)
		}
		out.Builds, out.Progress = builds, progress
	}
	data, err := out.JSON()
	if err != nil {
		return err
	}
	if err := writeFile(b.stepOut, data, 0o644); err != nil {
		return err
	}
	if out.Report != nil {
		gha.New().Build(out.Report, runErr)
		if err := emitReport(out.Report, b.reportFile, b.jsonOut, stdout); err != nil && runErr == nil {
			runErr = err
		}
	}
	return runErr
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
