package main

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/imagemode/imagemode/ci/flow"
	"github.com/imagemode/imagemode/ci/gha"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/vm"
)

func runCI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ci", "The end-to-end job: build-all, sign every layer, boot every layer in QEMU and probe it, attest every verdict.\nOne report; exit status 1 when any stage or verdict fails. GitHub Actions and a laptop run the same thing\n(`dagger call ci` does it with the engine).", stderr)
	var b buildFlags
	b.register(fs)
	var k keyFlags
	fs.StringVar(&k.key, "key", "", mhelp("run.ci.key", "File on the host."))
	fs.StringVar(&k.passFile, "key-password-file", "", mhelp("run.ci.password", "A file on the host (default: $IMAGEMODE_KEY_PASSWORD)."))
	accelFlag := fs.String("accel", mdefault("new.accel"), mhelp("new.accel"))
	deadline := fs.Duration("deadline", 180*time.Second, mhelp("new.deadline", "On the host a duration (e.g. 180s; default 180s)."))
	memory := fs.Int("memory", 1536, mhelp("new.memory"))
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	accel, err := vm.ParseAccel(*accelFlag)
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	cfg, p, cleanup, err := b.setup(ctx, nil, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	creds, err := b.credentials(b.registry, cfg.Profile.BaseImage)
	if err != nil {
		return err
	}
	reg, err := b.client(creds...)
	if err != nil {
		return err
	}
	signer, err := k.signer(ctx, reg)
	if err != nil {
		return err
	}
	g, err := layers.Open(os.DirFS(b.dir), ".", b.dir)
	if err != nil {
		return err
	}
	f := &flow.Flow{Pipeline: p, Signer: signer, Log: stderr,
		Smoker: flow.HostSmoker{Tester: smoke.NewTester(reg, stderr, 1), Graph: g,
			Template: smoke.Spec{Mode: smoke.ModeEphemeral, Accel: accel, Deadline: *deadline, MemoryMB: *memory}}}
	res, runErr := f.Run(ctx, cfg)
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
