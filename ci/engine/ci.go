package engine

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"dagger.io/dagger"

	"github.com/imagemode/imagemode/ci/flow"
	"github.com/imagemode/imagemode/ci/guest"
	"github.com/imagemode/imagemode/ci/lifecycle"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/tags"
	"github.com/imagemode/imagemode/ci/vm"
)

// CIInput is what the module's ci function takes: a build, the signing key, and how to smoke-test.
type CIInput struct {
	Build    BuildInput
	Key      *dagger.Secret
	Password *dagger.Secret
	Smoke    SmokeInput
}

// daggerSmoker smoke-tests a report's layers in QEMU service containers.
type daggerSmoker struct {
	client *dagger.Client
	in     SmokeInput
	log    io.Writer
}

func (d daggerSmoker) Smoke(ctx context.Context, rep *report.Report) ([]smoke.Verdict, error) {
	data, err := rep.JSON()
	if err != nil {
		return nil, err
	}
	in := d.in
	in.Report, in.Images, in.Key = string(data), nil, nil // the flow attests
	return SmokeTest(ctx, d.client, in, d.log)
}

// CI runs build-all, sign, smoke (ephemeral, or disk with in.Smoke.Disk) and attest.
func CI(ctx context.Context, client *dagger.Client, in CIInput, log io.Writer) (*flow.Result, error) {
	cfg, p, reg, cleanup, err := newPipeline(ctx, client, in.Build, log)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	s, err := signer(ctx, SignInput{Key: in.Key, Password: in.Password}, reg)
	if err != nil {
		return nil, err
	}
	in.Smoke.Dir, in.Smoke.RegistryAuth, in.Smoke.RunID = in.Build.Dir, in.Build.RegistryAuth, cfg.RunID
	f := &flow.Flow{Pipeline: p, Signer: s, Smoker: daggerSmoker{client: client, in: in.Smoke, log: log}, Log: log}
	return f.Run(ctx, cfg)
}

// LifecycleInput is what the module's lifecycle-test function takes.
type LifecycleInput struct {
	// Original is the previous release (or the candidate's parent chain) by digest; Candidate the image to
	// switch to; Channel the tag the installed host follows (moved to the candidate for the upgrade step).
	Original, Candidate, Channel string
	Refused                      []string
	Dir                          *dagger.Directory
	DiskBuilder                  string
	QEMUImage                    string
	RunID                        string
	Accel                        string
	StepDeadline                 time.Duration
	RegistryAuth                 Credential
}

// Lifecycle builds a disk of the original with bootc-image-builder, boots it in a QEMU service container (no
// -no-reboot: reboots happen inside QEMU, as on a server) and runs the life-cycle test against it through the
// service's endpoints.
func Lifecycle(ctx context.Context, client *dagger.Client, in LifecycleInput, log io.Writer) (*lifecycle.Report, error) {
	reg, err := registryClient(ctx, in.RegistryAuth, Credential{}, in.Original, "")
	if err != nil {
		return nil, err
	}
	labels, err := reg.Labels(ctx, in.Original)
	if err != nil {
		return nil, err
	}
	g, err := openGraph(ctx, in.Dir)
	if err != nil {
		return nil, err
	}
	l, ok := g.Layer(labels["io.imagemode.layer"])
	if !ok {
		return nil, fmt.Errorf("%s: its layer is not in layers.yaml", in.Original)
	}
	probes, err := smoke.Probes(l.Smoke)
	if err != nil {
		return nil, err
	}
	key, err := guest.NewKey("imagemode-lifecycle")
	if err != nil {
		return nil, err
	}
	follow := in.Channel
	if follow == "" {
		follow = followRef(in.Original, labels["io.imagemode.profile"])
	}
	disk, err := DiskImage(ctx, client, DiskInput{Image: in.Original, Follow: follow, Builder: in.DiskBuilder, SSHKey: key.Authorized, RegistryAuth: in.RegistryAuth})
	if err != nil {
		return nil, err
	}
	accel, err := vm.ParseAccel(in.Accel)
	if err != nil {
		return nil, err
	}
	cfg := vm.Config{Disk: "/disk/disk.qcow2", Format: "qcow2", Snapshot: true, MemoryMB: 2048, Credentials: map[string]string{},
		Forwards: []vm.Forward{{Guest: 22, Host: 22, Bind: "0.0.0.0"}}}
	service := smoke.Services(probes)
	smoke.Attach(&cfg, service, "0.0.0.0", true)
	var persist []lifecycle.Persistence
	for _, p := range service {
		if m, ok := p.(smoke.MariaDB); ok {
			persist = append(persist, &lifecycle.MariaDBRows{Probe: m})
		}
	}
	runID := in.RunID
	if runID == "" {
		runID = tags.NewRunID(time.Now())
	}
	launcher := serviceLauncher{qemu: QEMUContainer(client, in.QEMUImage), mounts: []Mount{{cfg.Disk, disk}}, run: runID, log: log}
	rg, err := vm.Boot[*serviceVM](ctx, launcher, cfg, accel, vm.BootOptions{Log: log})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := rg.Close(); err != nil {
			fmt.Fprintf(log, "imagemode lifecycle: %v\n", err)
		}
	}()
	lc := lifecycle.Config{Machine: rg, User: "bootc-user", Key: key, Sudo: true,
		Original: digestOf(in.Original), Candidate: in.Candidate, Channel: follow, Probes: service, Persist: persist,
		Refused: in.Refused, StepDeadline: in.StepDeadline}
	if in.RegistryAuth.Username != "" && in.RegistryAuth.Password != nil {
		pass, err := in.RegistryAuth.Password.Plaintext(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the registry password: %w", err)
		}
		host, _, _ := strings.Cut(in.Candidate, "/")
		if lc.RegistryAuth, err = registry.AuthJSON(map[string][2]string{host: {in.RegistryAuth.Username, pass}}); err != nil {
			return nil, err
		}
	}
	if in.Channel != "" {
		repo, tag := in.Channel[:strings.LastIndex(in.Channel, ":")], in.Channel[strings.LastIndex(in.Channel, ":")+1:]
		lc.MoveChannel = func(ctx context.Context, digest string) error {
			return reg.Tag(ctx, registry.DigestRef(repo, digest), tag)
		}
	}
	return lifecycle.Run(ctx, lc)
}

func digestOf(ref string) string {
	_, d, _ := strings.Cut(ref, "@")
	return d
}
