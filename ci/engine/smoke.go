package engine

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"dagger.io/dagger"

	"github.com/imagemode/imagemode/ci/diskimage"
	"github.com/imagemode/imagemode/ci/flow"
	"github.com/imagemode/imagemode/ci/guest"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/tags"
	"github.com/imagemode/imagemode/ci/vm"
)

// SmokeInput is what smoke-test takes.
type SmokeInput struct {
	SignInput
	// Dir is the containerfiles directory (the layers' probes).
	Dir *dagger.Directory
	// Disk boots a bootc-image-builder disk instead of the ephemeral root filesystem.
	Disk        bool
	DiskBuilder string
	// QEMUImage is the container QEMU runs in ("": DefaultQEMUImage with QEMU installed).
	QEMUImage string
	Accel     string
	Deadline  time.Duration
	MemoryMB  int
	// RunID marks every boot of this call (default: a new one), so no verdict comes from a cached or shared boot.
	RunID string
}

// SmokeTest boots every image in a QEMU service container and judges it with the same smoke.Tester the host CLI
// uses (probes, KVM fallback, deadlines, verdicts); with a key it attests each verdict.
func SmokeTest(ctx context.Context, client *dagger.Client, in SmokeInput, log io.Writer) ([]smoke.Verdict, error) {
	refs, err := in.refs()
	if err != nil {
		return nil, err
	}
	g, err := openGraph(ctx, in.Dir)
	if err != nil {
		return nil, err
	}
	reg, err := in.client(ctx)
	if err != nil {
		return nil, err
	}
	accel, err := vm.ParseAccel(in.Accel)
	if err != nil {
		return nil, err
	}
	if in.Deadline == 0 {
		in.Deadline = 240 * time.Second
	}
	if in.RunID == "" {
		in.RunID = tags.NewRunID(time.Now())
	}
	var attester signing.Signer
	if in.Key != nil {
		if attester, err = signer(ctx, in.SignInput, reg); err != nil {
			return nil, err
		}
	}
	mode := smoke.ModeEphemeral
	if in.Disk {
		mode = smoke.ModeDisk
	}
	var rep *report.Report
	if in.Report != "" {
		if rep, err = report.Parse([]byte(in.Report)); err != nil {
			return nil, fmt.Errorf("--report: %w", err)
		}
	}
	tmpl := smoke.Spec{Mode: mode, Accel: accel, Deadline: in.Deadline, MemoryMB: in.MemoryMB, RunID: in.RunID}
	if rep != nil {
		tmpl.Commit, tmpl.RunID = rep.Commit, rep.RunID // the verdicts belong to the run that built the images
	}
	specs, err := smoke.Specs(ctx, reg, refs, g, tmpl, "")
	if err != nil {
		return nil, err
	}
	tester := smoke.NewTesterWith(&engineBooter{client: client, in: in, log: log}, log, 1)
	var verdicts []smoke.Verdict
	for _, s := range specs {
		v, err := tester.Test(ctx, s)
		if err != nil {
			return verdicts, fmt.Errorf("smoke test of %s: %w", s.Image, err)
		}
		verdicts = append(verdicts, v)
	}
	if attester != nil {
		preds, err := smoke.Attest(ctx, attester, verdicts, log)
		if err != nil {
			return verdicts, err
		}
		if flow.CoversReport(rep, verdicts) {
			if err := flow.WriteRecord(ctx, attester, rep, verdicts, preds); err != nil {
				return verdicts, err
			}
		}
	}
	return verdicts, nil
}

// engineBooter prepares and boots images in the engine (smoke.Booter).
type engineBooter struct {
	client *dagger.Client
	in     SmokeInput
	log    io.Writer
	qemu   *dagger.Container
}

// Forwarding implements smoke.Booter: inside the service container QEMU forwards guest port p on port p of all
// addresses, which the service exposes on its hostname.
func (b *engineBooter) Forwarding() (string, bool) { return "0.0.0.0", true }

// Prepare implements smoke.Booter.
func (b *engineBooter) Prepare(ctx context.Context, s smoke.Spec, probes []smoke.Probe) (*smoke.Prepared, error) {
	if b.qemu == nil {
		b.qemu = QEMUContainer(b.client, b.in.QEMUImage)
	}
	_, digest, err := registry.SplitDigestRef(s.Image)
	if err != nil {
		return nil, err
	}
	var cfg vm.Config
	var mounts []Mount
	detail := ""
	if s.Mode == smoke.ModeDisk {
		key, err := guest.NewKey("imagemode-smoke")
		if err != nil {
			return nil, err
		}
		disk, err := DiskImage(ctx, b.client, DiskInput{Image: s.Image, Follow: followRef(s.Image, s.Profile), Builder: b.in.DiskBuilder,
			SSHKey: key.Authorized, RegistryAuth: b.in.RegistryAuth})
		if err != nil {
			return nil, err
		}
		ssh := smoke.SSH{User: "bootc-user", Key: key, Transcript: &guest.Transcript{}, Sudo: true}
		probes = append(smoke.WithSSH(probes, ssh), smoke.BootcBooted{SSH: ssh, Digest: digest}, smoke.NoFailedUnits{SSH: ssh})
		cfg = vm.Config{Disk: "/disk/disk.qcow2", Format: "qcow2", Snapshot: true, NoReboot: true}
		mounts = []Mount{{cfg.Disk, disk}}
		detail = "bootc-image-builder disk"
	} else {
		img := b.client.Container(dagger.ContainerOpts{Platform: "linux/amd64"})
		if a := b.in.RegistryAuth; a.Username != "" && a.Password != nil {
			host, _, _ := strings.Cut(s.Image, "/")
			img = img.WithRegistryAuth(host, a.Username, a.Password)
		}
		boot, err := PrepareEphemeral(ctx, b.qemu, img.From(s.Image).Rootfs())
		if err != nil {
			return nil, fmt.Errorf("preparing the boot of %s: %w", s.Image, err)
		}
		cfg, mounts = boot.Config, boot.Mounts
		detail = fmt.Sprintf("kernel %s, %q", boot.Layout.KernelVersion, boot.Layout.Cmdline())
	}
	l := serviceLauncher{qemu: b.qemu, mounts: mounts, run: b.in.RunID, log: b.log}
	return &smoke.Prepared{Config: cfg, Probes: probes, Detail: detail,
		Start: func(ctx context.Context, cfg vm.Config, accel vm.Accel) (vm.Instance, error) {
			return vm.Boot[*serviceVM](ctx, l, cfg, accel, vm.BootOptions{Log: b.log})
		}}, nil
}

// followRef is the tag a disk-installed host follows for `bootc upgrade`: the layer's channel tag of the profile.
func followRef(ref, profile string) string {
	repo, _, _ := strings.Cut(ref, "@")
	if profile == "" {
		profile = "latest"
	}
	return repo + ":" + profile
}

// DiskInput is one disk image build.
type DiskInput struct {
	// Image is the image by digest; Follow the tag reference the installed host follows.
	Image, Follow string
	// Builder is the builder image (default: CentOS's bootc-image-builder).
	Builder string
	// SSHKey is an authorized_keys line for bootc-user.
	SSHKey       string
	RegistryAuth Credential
}

// DiskImage builds a qcow2 with bootc-image-builder (or image-builder) in a privileged container: the image is
// pulled by digest from the registry into an overlay containers-storage inside the same exec, tagged with the
// reference the host follows, and installed with bootc-user and the SSH key from config.toml.
func DiskImage(ctx context.Context, client *dagger.Client, in DiskInput) (*dagger.File, error) {
	if in.Builder == "" {
		in.Builder = diskimage.BIBCentOS
	}
	for _, r := range []struct{ flag, ref string }{{"--image", in.Image}, {"--follow", in.Follow}} {
		if err := CheckReachable(r.flag, r.ref); err != nil {
			return nil, err
		}
	}
	conf, err := diskimage.ConfigTOML(diskimage.Config{Users: []diskimage.User{{Name: "bootc-user", Key: in.SSHKey, Groups: []string{"wheel"}}}})
	if err != nil {
		return nil, err
	}
	host, _, _ := strings.Cut(in.Image, "/")
	job := diskimage.Job{Kind: diskimage.KindOf(in.Builder), Image: in.Image, Follow: in.Follow, TLSVerify: !isLoopbackHost(host)}
	ctr := client.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From(in.Builder).
		WithNewFile("/config.toml", string(conf)).
		// An overlay containers-storage needs a filesystem that is not itself overlayfs: a cache volume is one.
		WithMountedCache("/var/lib/containers/storage", client.CacheVolume("imagemode-disk-builder-storage"))
	if in.RegistryAuth.Username != "" && in.RegistryAuth.Password != nil {
		pass, err := in.RegistryAuth.Password.Plaintext(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the registry password: %w", err)
		}
		auth, err := registry.AuthJSON(map[string][2]string{host: {in.RegistryAuth.Username, pass}})
		if err != nil {
			return nil, err
		}
		ctr = ctr.WithMountedSecret("/run/secrets/auth.json", client.SetSecret("imagemode-disk-auth", string(auth)))
		job.AuthFile = "/run/secrets/auth.json"
	}
	script, err := diskimage.Script(job)
	if err != nil {
		return nil, err
	}
	out := ctr.WithExec([]string{"sh", "-c", script}, dagger.ContainerWithExecOpts{InsecureRootCapabilities: true}).
		File("/output/disk.qcow2")
	if _, err := out.Sync(ctx); err != nil {
		return nil, fmt.Errorf("building the disk image of %s with %s: %w\n(is the builder image reachable from the engine, "+
			"with credentials where it needs them? Choose another with --disk-builder: %s, %s or %s)",
			in.Image, in.Builder, err, diskimage.BIBCentOS, "registry.redhat.io/rhel10/bootc-image-builder", "ghcr.io/osbuild/image-builder-cli")
	}
	return out, nil
}

func isLoopbackHost(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	ip := net.ParseIP(h)
	return h == "localhost" || (ip != nil && ip.IsLoopback())
}
