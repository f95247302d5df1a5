package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"dagger.io/dagger"

	"github.com/imagemode/imagemode/ci/diskimage"
	"github.com/imagemode/imagemode/ci/ephemeral"
	"github.com/imagemode/imagemode/ci/guest"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/pipeline"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/vm"
)

// QEMUImage is the container QEMU runs in; qemu-system-x86 and e2fsprogs are installed on top.
const QEMUImage = "docker.io/library/debian:bookworm-slim"

// serialPort is where the QEMU container exposes the guest's serial console.
const serialPort = 4444

// SmokeInput is what smoke-test takes.
type SmokeInput struct {
	SignInput
	// Dir is the containerfiles directory (the layers' probes).
	Dir *dagger.Directory
	// Disk boots a bootc-image-builder disk instead of the ephemeral root filesystem.
	Disk        bool
	DiskBuilder string
	Accel       string
	Deadline    time.Duration
	MemoryMB    int
}

// qemuContainer is a container with QEMU and mkfs.ext4.
func qemuContainer(client *dagger.Client) *dagger.Container {
	return client.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From(QEMUImage).
		WithMountedCache("/var/cache/apt", client.CacheVolume("imagemode-apt-cache")).
		WithExec([]string{"sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 qemu-utils e2fsprogs >/dev/null && rm -rf /var/lib/apt/lists/*"})
}

// SmokeTest boots every image in a QEMU service container, probes it through the service's endpoint from here,
// and returns the verdicts; with a key it attests each verdict. The service's health check passes as soon as QEMU
// opens its ports, long before the guest answers: the probes retry until the deadline.
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
	var attester signing.Signer
	if in.Key != nil {
		if attester, err = signer(ctx, in.SignInput, reg); err != nil {
			return nil, err
		}
	}
	var verdicts []smoke.Verdict
	for _, ref := range refs {
		labels, err := reg.Labels(ctx, ref)
		if err != nil {
			return nil, err
		}
		name := labels[pipeline.LabelLayer]
		l, ok := g.Layer(name)
		if !ok {
			return nil, fmt.Errorf("%s: its layer %q is not in the containerfiles' layers.yaml", ref, name)
		}
		v, err := smokeOne(ctx, client, in, ref, l, labels[pipeline.LabelProfile], accel, log)
		if err != nil {
			return nil, err
		}
		v.Commit = in.commit(labels[pipeline.LabelRevision])
		if attester != nil {
			pred, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("encoding the verdict: %w", err)
			}
			if err := attester.Attest(ctx, ref, signing.PredicateSmoke, pred); err != nil {
				return nil, err
			}
		}
		verdicts = append(verdicts, v)
	}
	return verdicts, nil
}

// commit is the run's commit: the report's, else the image's revision label.
func (in SmokeInput) commit(revision string) string {
	if in.Report != "" {
		if rep, err := report.Parse([]byte(in.Report)); err == nil && rep.Commit != "" {
			return rep.Commit
		}
	}
	return revision
}

func smokeOne(ctx context.Context, client *dagger.Client, in SmokeInput, ref string, l layers.Layer, profile string, accel vm.Accel, log io.Writer) (smoke.Verdict, error) {
	start := time.Now()
	_, digest, err := registry.SplitDigestRef(ref)
	if err != nil {
		return smoke.Verdict{}, err
	}
	probes, err := smoke.Probes(l.Smoke)
	if err != nil {
		return smoke.Verdict{}, err
	}
	mode := smoke.ModeEphemeral
	cfg := vm.Config{NoReboot: true, MemoryMB: in.MemoryMB, Credentials: map[string]string{}}
	var ctr *dagger.Container
	var args []string
	if in.Disk {
		mode = smoke.ModeDisk
		key, err := guest.NewKey("imagemode-smoke")
		if err != nil {
			return smoke.Verdict{}, err
		}
		disk, err := DiskImage(ctx, client, DiskInput{Image: ref, Follow: followRef(ref, profile), Builder: in.DiskBuilder, SSHKey: key.Authorized, RegistryAuth: in.RegistryAuth})
		if err != nil {
			return smoke.Verdict{}, err
		}
		ssh := smoke.SSH{User: "bootc-user", Key: key, Transcript: &guest.Transcript{}, Sudo: true}
		probes = append(smoke.WithSSH(probes, ssh), smoke.BootcBooted{SSH: ssh, Digest: digest}, smoke.NoFailedUnits{SSH: ssh})
		cfg.Disk, cfg.Format, cfg.Snapshot = "/disk/disk.qcow2", "qcow2", true
		ctr = qemuContainer(client).WithMountedFile("/disk/disk.qcow2", disk)
	} else {
		img := client.Container(dagger.ContainerOpts{Platform: "linux/amd64"})
		if in.RegistryAuth.Username != "" && in.RegistryAuth.Password != nil {
			host, _, _ := strings.Cut(ref, "/")
			img = img.WithRegistryAuth(host, in.RegistryAuth.Username, in.RegistryAuth.Password)
		}
		ctr = qemuContainer(client).WithMountedDirectory("/rootfs", img.From(ref).Rootfs())
	}
	for _, gp := range smoke.Attach(&cfg, probes, "0.0.0.0", true) {
		ctr = ctr.WithExposedPort(gp)
	}
	if in.Disk {
		var q []string
		for _, a := range cfg.Args(accel, fmt.Sprintf("tcp:0.0.0.0:%d,server=on,wait=off", serialPort), "/work/qmp.sock") {
			q = append(q, ephemeral.ShellQuote(a))
		}
		ctr = ctr.WithNewFile("/boot.sh", "set -eu\nmkdir -p /work\nexec qemu-system-x86_64 "+strings.Join(q, " ")+"\n")
	} else {
		script, err := ephemeral.Script(ephemeral.ScriptOptions{Rootfs: "/rootfs", Work: "/work", VM: cfg, Accel: accel, SerialPort: serialPort})
		if err != nil {
			return smoke.Verdict{}, err
		}
		ctr = ctr.WithNewFile("/boot.sh", script)
	}
	args = []string{"sh", "/boot.sh"}
	svc := ctr.WithExposedPort(serialPort).AsService(dagger.ContainerAsServiceOpts{Args: args, InsecureRootCapabilities: true})
	fmt.Fprintf(log, "imagemode smoke: %s: starting the %s VM of %s\n", l.Name, mode, ref)
	svc, err = svc.Start(ctx)
	if err != nil {
		return smoke.Verdict{}, fmt.Errorf("starting the VM service for %s: %w", ref, err)
	}
	defer func() {
		if _, err := svc.Stop(ctx); err != nil {
			fmt.Fprintf(log, "imagemode smoke: stopping the VM service: %v\n", err)
		}
	}()
	host, err := svc.Hostname(ctx)
	if err != nil {
		return smoke.Verdict{}, fmt.Errorf("the VM service's hostname: %w", err)
	}
	rt := newRemoteGuest(ctx, host)
	defer rt.close()
	results, fatal := smoke.Run(ctx, rt, probes, smoke.RunOptions{Deadline: in.Deadline})
	v := smoke.Verdict{Verdict: smoke.Pass, Image: ref, Digest: digest, Layer: l.Name, Profile: profile, Mode: mode,
		Accel: string(accel), Probes: results, Started: start.UTC(), DurationMS: time.Since(start).Milliseconds()}
	var failed []string
	for _, r := range results {
		if !r.OK {
			failed = append(failed, r.Name+": "+r.Detail)
		}
	}
	switch {
	case fatal != nil:
		v.Verdict, v.Reason = smoke.Fail, fatal.Error()
	case len(failed) > 0:
		v.Verdict, v.Reason = smoke.Fail, fmt.Sprintf("not passed within %s: %s", in.Deadline, strings.Join(failed, "; "))
	}
	if v.Verdict == smoke.Fail {
		v.SerialTail = vm.Tail(rt.Serial(), smoke.SerialTailLines)
	}
	return v, nil
}

// followRef is the tag a disk-installed host follows for `bootc upgrade`: the layer's channel tag of the profile.
func followRef(ref, profile string) string {
	repo, _, _ := strings.Cut(ref, "@")
	if profile == "" {
		profile = "latest"
	}
	return repo + ":" + profile
}

// remoteGuest is a VM reached through a Dagger service: the forwarded ports on the service's hostname, and the
// serial console streamed from its TCP port.
type remoteGuest struct {
	host    string
	started time.Time
	mu      sync.Mutex
	serial  strings.Builder
	cancel  context.CancelFunc
	exited  chan struct{}
}

func newRemoteGuest(ctx context.Context, host string) *remoteGuest {
	ctx, cancel := context.WithCancel(ctx)
	r := &remoteGuest{host: host, started: time.Now(), cancel: cancel, exited: make(chan struct{})}
	go r.readSerial(ctx)
	return r
}

func (r *remoteGuest) readSerial(ctx context.Context) {
	var d net.Dialer
	for ctx.Err() == nil {
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(r.host, fmt.Sprint(serialPort)))
		if err != nil {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				r.mu.Lock()
				r.serial.Write(buf[:n])
				r.mu.Unlock()
			}
			if err != nil {
				break
			}
		}
		conn.Close()
	}
}

func (r *remoteGuest) close() { r.cancel() }

// Addr implements smoke.Target: the service forwards guest port p on the same port.
func (r *remoteGuest) Addr(p int) string { return net.JoinHostPort(r.host, fmt.Sprint(p)) }

// Serial implements smoke.Target.
func (r *remoteGuest) Serial() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.serial.String()
}

func (r *remoteGuest) Started() time.Time      { return r.started }
func (r *remoteGuest) Exited() <-chan struct{} { return r.exited }
func (r *remoteGuest) ExitError() error        { return nil }

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
		return nil, fmt.Errorf("building the disk image of %s with %s: %w", in.Image, in.Builder, err)
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
