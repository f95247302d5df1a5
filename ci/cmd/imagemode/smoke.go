package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/imagemode/imagemode/ci/flow"
	"github.com/imagemode/imagemode/ci/gha"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/tags"
	"github.com/imagemode/imagemode/ci/vm"
)

func runSmoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("smoke", "Boot images in QEMU and probe them: the guest reaches multi-user, plus the probes layers.yaml declares for\nthe layer (HTTP pages, MariaDB round trip). Prints a verdict per image; exit status 1 if any fails. With --key,\nthe verdicts are signed as attestations that promotion checks.", stderr)
	var im imageFlags
	im.register(fs)
	dir := fs.String("dir", "containerfiles", mhelp("new.dir", "On the host: a path."))
	layer := fs.String("layer", "", "the image's layer (default: its io.imagemode.layer label)")
	mode := fs.String("mode", smoke.ModeEphemeral, "boot mode: ephemeral (the image's kernel and root filesystem, no disk builder) or disk (disks the disk builder made: --disk-file, --ssh-key-file)")
	var df diskFlags
	df.register(fs)
	accelFlag := fs.String("accel", mdefault("new.accel"), mhelp("new.accel"))
	deadline := fs.Duration("deadline", 180*time.Second, mhelp("new.deadline", "On the host a duration (e.g. 180s; default 180s)."))
	memory := fs.Int("memory", 1536, mhelp("new.memory"))
	parallel := fs.Int("parallel", 1, "VMs at once (TCG on 2 cores: 1)")
	commit := fs.String("commit", "", "commit of the run the verdicts belong to (default: --from-report's, else the image's revision label)")
	jsonOut := fs.Bool("json", false, "print the verdicts as JSON")
	reportFile := fs.String("report", "", "also write the verdicts (JSON) to this file")
	var k keyFlags
	k.registerPrivate(fs)
	var rf registryFlags
	rf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkReportFile(*reportFile); err != nil {
		return err
	}
	accel, err := vm.ParseAccel(*accelFlag)
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	if *mode != smoke.ModeEphemeral && *mode != smoke.ModeDisk {
		return &usageError{msg: fmt.Sprintf("--mode %q: ephemeral or disk", *mode)}
	}
	refs, err := im.refs()
	if err != nil {
		return err
	}
	g, err := layers.Open(os.DirFS(*dir), ".", *dir)
	if err != nil {
		return err
	}
	reg, err := rf.pushClient(refs[0])
	if err != nil {
		return err
	}
	var signer signing.Signer
	if k.key != "" || k.keyless {
		s, err := k.signer(ctx, reg)
		if err != nil {
			return err
		}
		signer = s
	}
	c := *commit
	if c == "" {
		c = im.reportCommit
	}
	runID := tags.NewRunID(time.Now())
	if im.report != nil {
		runID = im.report.RunID // the verdicts belong to the run that built the images
	}
	specs, err := smoke.Specs(ctx, reg, refs, g, smoke.Spec{Commit: c, RunID: runID, Mode: *mode, Accel: accel, Deadline: *deadline, MemoryMB: *memory}, *layer)
	if err != nil {
		return err
	}

	booter, err := df.booter(reg, *mode)
	if err != nil {
		return err
	}
	tester := smoke.NewTesterWith(booter, stderr, *parallel)
	verdicts := make([]smoke.Verdict, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			verdicts[i], errs[i] = tester.Test(ctx, specs[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("smoke test of %s: %w", specs[i].Image, err)
		}
	}
	if signer != nil {
		preds, err := smoke.Attest(ctx, signer, verdicts, stderr)
		if err != nil {
			return err
		}
		if flow.CoversReport(im.report, verdicts) {
			if err := flow.WriteRecord(ctx, signer, reg, im.report, verdicts, preds); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "imagemode smoke: attested the run record of run %s\n", im.report.RunID)
		}
	}
	gha.New().Verdicts(verdicts)
	data, err := json.MarshalIndent(verdicts, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the verdicts: %w", err)
	}
	if err := output(stdout, *reportFile, *jsonOut, data, func() string {
		var b strings.Builder
		for _, v := range verdicts {
			printVerdict(&b, v)
		}
		return b.String()
	}); err != nil {
		return err
	}
	var failed []string
	for _, v := range verdicts {
		if v.Verdict != smoke.Pass {
			failed = append(failed, v.Layer)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("smoke test FAILED for %s", strings.Join(failed, ", "))
	}
	return nil
}

func printVerdict(w io.Writer, v smoke.Verdict) {
	fmt.Fprintf(w, "%s  %s  %s (%s, %s, %s)\n", strings.ToUpper(v.Verdict), v.Layer, v.Image, v.Mode, v.Accel, time.Duration(v.DurationMS)*time.Millisecond)
	for _, p := range v.Probes {
		mark := "ok  "
		if !p.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %-12s %6.1fs after boot, %d attempt(s): %s\n", mark, p.Name, float64(p.SinceBootMS)/1000, p.Attempts, p.Detail)
	}
	if v.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", v.Reason)
	}
	if v.SerialTail != "" {
		fmt.Fprintf(w, "  serial console (last %d lines):\n", smoke.SerialTailLines)
		for _, l := range strings.Split(v.SerialTail, "\n") {
			fmt.Fprintf(w, "    | %s\n", l)
		}
	}
}
