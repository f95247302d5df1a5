package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/imagemode/imagemode/ci/gha"
	"github.com/imagemode/imagemode/ci/guest"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/lifecycle"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/vm"
)

func runLifecycleTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("lifecycle-test", "Boot a disk of the previous release (made with `dagger call disk-image`) and prove the life cycle over SSH:\nbootc switch to the candidate and reboot, bootc rollback and reboot, bootc upgrade along --channel and reboot —\nchecking the booted digest, the layer's probes and a local /etc change after every boot, and that the host's\nsignature policy refuses --refuse images. Real bootc: this runs on GitHub Actions (KVM), not on machines without it.", stderr)
	disk := fs.String("disk", "", "qcow2 of the previous release (required); it is not modified (QEMU snapshot)")
	keyFile := fs.String("ssh-key-file", "", "OpenSSH private key whose public key the disk's config.toml authorized (required)")
	user := fs.String("user", "bootc-user", "SSH user (sudo for bootc)")
	original := fs.String("original", "", mhelp("lifecycle-test.original"))
	candidate := fs.String("candidate", "", mhelp("lifecycle-test.candidate"))
	channel := fs.String("channel", "", mhelp("lifecycle-test.channel"))
	var refuse multiFlag
	fs.Var(&refuse, "refuse", mhelp("lifecycle-test.refuse"))
	dir := fs.String("dir", "containerfiles", mhelp("new.dir", "On the host: a path."))
	layer := fs.String("layer", "", "the layer (its probes run after every boot; default: --original's io.imagemode.layer label)")
	accelFlag := fs.String("accel", mdefault("new.accel"), mhelp("new.accel"))
	stepDeadline := fs.Duration("step-deadline", 5*time.Minute, mhelp("lifecycle-test.step-deadline", "On the host a duration."))
	memory := fs.Int("memory", 2048, mhelp("new.memory", "On the host the default is 2048 (the module uses 2048 for life cycles too)."))
	reportFile := fs.String("report", "", "also write the JSON report (with the transcript) to this file")
	jsonOut := fs.Bool("json", false, "print the JSON report")
	var rf registryFlags
	rf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkReportFile(*reportFile); err != nil {
		return err
	}
	if *disk == "" || *keyFile == "" || *original == "" || *candidate == "" {
		return &usageError{msg: "--disk, --ssh-key-file, --original and --candidate are required"}
	}
	accel, err := vm.ParseAccel(*accelFlag)
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	_, originalDigest, err := registry.SplitDigestRef(*original)
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--original %q: give the image by digest (repository@sha256:...)", *original)}
	}
	if _, _, err := registry.SplitDigestRef(*candidate); err != nil {
		return &usageError{msg: fmt.Sprintf("--candidate %q: give the image by digest (repository@sha256:...)", *candidate)}
	}
	key, err := guest.ReadKey(*keyFile)
	if err != nil {
		return &usageError{msg: "--ssh-key-file: " + err.Error()}
	}
	g, err := layers.Open(os.DirFS(*dir), ".", *dir)
	if err != nil {
		return err
	}
	if *layer == "" {
		reg, err := rf.pushClient(*original)
		if err != nil {
			return err
		}
		labels, err := reg.Labels(ctx, *original)
		if err != nil {
			return fmt.Errorf("--original: reading its layer label (or pass --layer): %w", err)
		}
		if *layer = labels[layers.LabelLayer]; *layer == "" {
			return &usageError{msg: fmt.Sprintf("--original %s has no %s label: pass --layer", *original, layers.LabelLayer)}
		}
	}
	l, ok := g.Layer(*layer)
	if !ok {
		return &usageError{msg: fmt.Sprintf("--layer %q is not in %s", *layer, g.File)}
	}
	probes, err := smoke.Probes(l.Smoke)
	if err != nil {
		return err
	}
	service := smoke.Services(probes)
	cfg := vm.Config{Disk: *disk, Format: "qcow2", Snapshot: true, MemoryMB: *memory, Forwards: []vm.Forward{{Guest: 22}}}
	smoke.Attach(&cfg, service, "", false)
	machine, err := vm.Start(ctx, cfg, accel)
	if err != nil {
		return err
	}
	defer func() {
		if err := machine.Close(); err != nil {
			fmt.Fprintf(stderr, "imagemode lifecycle-test: %v\n", err)
		}
	}()
	lc := lifecycle.Config{Machine: machine, User: *user, Key: key, Sudo: *user != "root",
		Original: originalDigest, Candidate: *candidate, Channel: *channel, Probes: service, Refused: refuse, StepDeadline: *stepDeadline}
	if creds, err := rf.credentials(*candidate, ""); err != nil {
		return err
	} else if len(creds) > 0 {
		m := map[string][2]string{}
		for _, c := range creds {
			m[c.host] = [2]string{c.user, c.pass}
		}
		if lc.RegistryAuth, err = registry.AuthJSON(m); err != nil {
			return err
		}
	}
	if *channel != "" {
		reg, err := rf.pushClient(*channel)
		if err != nil {
			return err
		}
		repo := (*channel)[:strings.LastIndex(*channel, ":")]
		tag := (*channel)[strings.LastIndex(*channel, ":")+1:]
		lc.MoveChannel = func(ctx context.Context, digest string) error {
			return reg.Tag(ctx, registry.DigestRef(repo, digest), tag)
		}
	}
	for _, p := range service {
		if m, ok := p.(smoke.MariaDB); ok {
			lc.Persist = append(lc.Persist, &lifecycle.MariaDBRows{Probe: m})
		}
	}
	rep, err := lifecycle.Run(ctx, lc)
	if err != nil {
		return err
	}
	gha.New().Lifecycle(rep)
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	if err := output(stdout, *reportFile, *jsonOut, data, func() string {
		var w strings.Builder
		for _, s := range rep.Steps {
			mark := "ok  "
			if !s.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(&w, "%s %-36s %6.1fs  booted %s %s\n", mark, s.Name, float64(s.DurationMS)/1000, s.Booted, s.Detail)
		}
		fmt.Fprintf(&w, "life cycle: %s %s\n", strings.ToUpper(rep.Verdict), rep.Reason)
		return w.String()
	}); err != nil {
		return err
	}
	if rep.Verdict != smoke.Pass {
		return fmt.Errorf("life-cycle test FAILED: %s", rep.Reason)
	}
	return nil
}
