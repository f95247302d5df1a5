package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/imagemode/imagemode/ci/flow"
	"github.com/imagemode/imagemode/ci/gha"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/pipeline"
	"github.com/imagemode/imagemode/ci/provenance"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/vm"
)

func runCI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ci", "The end-to-end job: build-all, sign every layer, boot every layer in QEMU and probe it, attest every verdict.\nOne report; exit status 1 when any stage or verdict fails. GitHub Actions and a laptop run the same thing\n(`dagger call build-all ci` does it with the engine). With --from-report, the stages after an earlier build-all.", stderr)
	var b buildFlags
	b.register(fs)
	var k keyFlags
	fs.StringVar(&k.key, "key", "", mhelp("run.ci.key", "File on the host."))
	fs.StringVar(&k.passFile, "key-password-file", "", mhelp("run.ci.password", "A file on the host (default: $IMAGEMODE_KEY_PASSWORD)."))
	accelFlag := fs.String("accel", mdefault("new.accel"), mhelp("new.accel"))
	deadline := fs.Duration("deadline", 180*time.Second, mhelp("new.deadline", "On the host a duration (e.g. 180s; default 180s)."))
	memory := fs.Int("memory", 1536, mhelp("new.memory"))
	fromReport := fs.String("from-report", "", "sign, smoke-test and attest the layers of this build-all report (JSON) instead of building")
	builderID := fs.String("builder-id", "", "the builder named in the layers' provenance (default: the GitHub workflow ref on Actions, else $IMAGEMODE_BUILDER_ID, else "+provenance.BuilderCLI+")")
	mode := fs.String("mode", smoke.ModeEphemeral, "boot mode: ephemeral or disk (disks the disk builder made: --disk-file, --ssh-key-file)")
	var df diskFlags
	df.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	accel, err := vm.ParseAccel(*accelFlag)
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	if *mode != smoke.ModeEphemeral && *mode != smoke.ModeDisk {
		return &usageError{msg: fmt.Sprintf("--mode %q: ephemeral or disk", *mode)}
	}
	if err := checkReportFile(b.reportFile); err != nil {
		return err
	}
	var rep *report.Report
	var cfg pipeline.Config
	f := &flow.Flow{Log: stderr}
	var creds []credential
	if *fromReport != "" {
		data, err := os.ReadFile(*fromReport)
		if err != nil {
			return fmt.Errorf("--from-report: %w", err)
		}
		if rep, err = report.Parse(data); err != nil {
			return fmt.Errorf("--from-report %q: %w", *fromReport, err)
		}
		if creds, err = b.credentials(rep.Registry, ""); err != nil {
			return err
		}
	} else {
		c, p, cleanup, err := b.setup(ctx, nil, stderr)
		if err != nil {
			return err
		}
		defer cleanup()
		if creds, err = b.credentials(b.registry, c.Profile.BaseImage); err != nil {
			return err
		}
		f.Pipeline, cfg = p, c
	}
	reg, err := b.client(creds...)
	if err != nil {
		return err
	}
	f.Anchors = reg
	if f.Signer, err = k.signer(ctx, reg); err != nil {
		return err
	}
	f.Evidence = &flow.Evidencer{Images: reg, Signer: f.Signer, BuilderID: *builderID, ToolVersion: toolVersion(), Log: stderr}
	g, err := layers.Open(os.DirFS(b.dir), ".", b.dir)
	if err != nil {
		return err
	}
	booter, err := df.booter(reg, *mode)
	if err != nil {
		return err
	}
	f.Smoker = flow.HostSmoker{Tester: smoke.NewTesterWith(booter, stderr, 1), Graph: g,
		Template: smoke.Spec{Mode: *mode, Accel: accel, Deadline: *deadline, MemoryMB: *memory}}
	var res *flow.Result
	var runErr error
	if rep != nil {
		res, runErr = f.AfterBuild(ctx, rep)
	} else {
		res, runErr = f.Run(ctx, cfg)
	}
	gha.New().CI(res, runErr)
	if res != nil {
		data, err := res.JSON()
		if err != nil {
			return err
		}
		if err := output(stdout, b.reportFile, b.jsonOut, data, res.Text); err != nil && runErr == nil {
			runErr = err
		}
	}
	return runErr
}
