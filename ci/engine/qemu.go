package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"dagger.io/dagger"

	"github.com/imagemode/imagemode/ci/ephemeral"
	"github.com/imagemode/imagemode/ci/vm"
)

// DefaultQEMUImage is the container QEMU runs in when no --qemu-image is given: Debian with qemu-system-x86,
// qemu-utils and e2fsprogs installed by apt (the engine caches that step).
const DefaultQEMUImage = "docker.io/library/debian:bookworm-slim"

// qmpPort is the QMP port of a QEMU service container, beside the guest ports it forwards. The serial console is
// not a port: QEMU keeps it in a ring buffer (vm.SerialRing) that QMP reads, so no connection has to be held to
// it (a console port serves one client, and a console that stayed empty for a whole boot was seen on the engine
// while the guest's HTTP answered).
const qmpPort = 4445

// QEMUContainer is the container QEMU and mkfs.ext4 run in. With image "" it is DefaultQEMUImage with the
// packages installed (cached by the engine after the first run); any other image must have qemu-system-x86_64 and
// mkfs.ext4 on its PATH already.
func QEMUContainer(client *dagger.Client, image string) *dagger.Container {
	if image != "" {
		return client.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From(image)
	}
	return client.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From(DefaultQEMUImage).
		WithMountedCache("/var/cache/apt", client.CacheVolume("imagemode-apt-cache")).
		WithEnvVariable("DEBIAN_FRONTEND", "noninteractive").
		WithExec([]string{"apt-get", "update", "-qq"}).
		WithExec([]string{"apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-system-x86", "qemu-utils", "e2fsprogs"}).
		WithExec([]string{"rm", "-rf", "/var/lib/apt/lists"})
}

// rootFS reads an image's root filesystem through the engine (ephemeral.RootFS).
type rootFS struct{ dir *dagger.Directory }

func (r rootFS) Glob(ctx context.Context, pattern string) ([]string, error) {
	m, err := r.dir.Glob(ctx, pattern)
	if err != nil {
		return nil, fmt.Errorf("looking for %s in the image: %w", pattern, err)
	}
	return m, nil
}

func (r rootFS) ReadFile(ctx context.Context, name string) ([]byte, error) {
	s, err := r.dir.File(name).Contents(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading /%s of the image: %w", name, err)
	}
	return []byte(s), nil
}

// EphemeralBoot is an image made ready for a direct kernel boot in the engine.
type EphemeralBoot struct {
	// Config boots it: kernel, initramfs, command line and root disk at the paths Mounts put them.
	Config vm.Config
	Mounts []Mount
	Layout *ephemeral.Layout
}

// Container is qemu with the boot's files mounted.
func (b *EphemeralBoot) Container(qemu *dagger.Container) *dagger.Container {
	for _, m := range b.Mounts {
		qemu = qemu.WithMountedFile(m.Path, m.File)
	}
	return qemu
}

// PrepareEphemeral prepares the direct kernel boot of an image's root filesystem in the engine, exactly as the
// host does it: the same ephemeral.Inspect finds the kernel and reads kargs.d (through the container's root
// filesystem), the same du and mkfs.ext4 commands make the root disk (in the QEMU container, the root filesystem
// mounted). The engine caches the disk per image.
func PrepareEphemeral(ctx context.Context, qemu *dagger.Container, root *dagger.Directory) (*EphemeralBoot, error) {
	lay, err := ephemeral.Inspect(ctx, rootFS{root})
	if err != nil {
		return nil, err
	}
	dc := ephemeral.DiskCommand{Root: "/rootfs", Disk: "/out/root.raw"}
	tools := qemu.WithMountedDirectory("/rootfs", root)
	out, err := tools.WithExec(dc.Measure()).Stdout(ctx)
	if err != nil {
		return nil, fmt.Errorf("measuring the root filesystem: %w", err)
	}
	used, err := ephemeral.ParseMeasure(out)
	if err != nil {
		return nil, err
	}
	disk := tools.WithExec([]string{"mkdir", "-p", "/out"}).WithExec(dc.Make(ephemeral.DiskMiB(used))).File(dc.Disk)
	if _, err := disk.Sync(ctx); err != nil {
		return nil, fmt.Errorf("making the root disk with mkfs.ext4: %w", err)
	}
	cfg := vm.Config{Kernel: "/boot/vmlinuz", Initrd: "/boot/initramfs.img", Append: lay.Cmdline(),
		Disk: "/boot/root.raw", Format: "raw", Snapshot: true, NoReboot: true}
	return &EphemeralBoot{Config: cfg, Layout: lay,
		Mounts: []Mount{{cfg.Kernel, root.File(lay.Kernel)}, {cfg.Initrd, root.File(lay.Initrd)}, {cfg.Disk, disk}}}, nil
}

// Mount is a file mounted into the QEMU container.
type Mount struct {
	Path string
	File *dagger.File
}

// serviceLauncher starts QEMU as a Dagger service: the container's only process is qemu-system-x86_64 with the
// argv of vm.Config.Args; the guest's forwarded ports, the serial console and QMP are the service's ports.
type serviceLauncher struct {
	qemu   *dagger.Container
	mounts []Mount
	// run marks every boot (with a random suffix) so that no two boots are the same service and none is cached.
	run string
	log io.Writer
}

// MayUseKVM implements vm.Launcher: the module cannot see the engine's /dev/kvm, so auto tries KVM until it is
// found broken in this call.
func (l serviceLauncher) MayUseKVM() bool { return !vm.KVMKnownBroken() }

// Launch implements vm.Launcher.
func (l serviceLauncher) Launch(ctx context.Context, cfg vm.Config, accel vm.Accel) (*serviceVM, error) {
	nonce := make([]byte, 6)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("making a boot id: %w", err)
	}
	ctr := l.qemu.WithEnvVariable("IMAGEMODE_BOOT", l.run+"-"+hex.EncodeToString(nonce))
	for _, m := range l.mounts {
		ctr = ctr.WithMountedFile(m.Path, m.File)
	}
	for _, f := range cfg.Forwards {
		ctr = ctr.WithExposedPort(f.Host)
	}
	// QEMU serves QMP to one client at a time: the engine's health check must not take the module's place.
	ctr = ctr.WithExposedPort(qmpPort, dagger.ContainerWithExposedPortOpts{ExperimentalSkipHealthcheck: true})
	argv := append([]string{"qemu-system-x86_64"}, cfg.Args(accel, vm.SerialRing,
		fmt.Sprintf("tcp:0.0.0.0:%d,server=on,wait=off", qmpPort))...)
	svc, err := ctr.AsService(dagger.ContainerAsServiceOpts{Args: argv, InsecureRootCapabilities: true}).Start(ctx)
	if err != nil {
		return nil, fmt.Errorf("starting QEMU (%s) in a service container: %w", accel, err)
	}
	// QEMU's start: the engine's health check passed, i.e. QEMU listens on the guest ports it forwards (it opens
	// them as it starts). A VM that forwards no port is judged from a little before QEMU runs.
	started := time.Now()
	host, err := svc.Hostname(ctx)
	if err != nil {
		if _, serr := svc.Stop(context.WithoutCancel(ctx), dagger.ServiceStopOpts{Kill: true}); serr != nil {
			fmt.Fprintf(l.log, "imagemode vm: stopping the QEMU service: %v\n", serr)
		}
		return nil, fmt.Errorf("the QEMU service's hostname: %w", err)
	}
	return newServiceVM(ctx, svc, host, accel, started, l.log), nil
}

// serviceVM is a QEMU running in a service container, reached over the engine's network: vm.Instance.
type serviceVM struct {
	svc     *dagger.Service
	host    string
	accel   vm.Accel
	started time.Time
	log     io.Writer
	cancel  context.CancelFunc
	// base outlives the call that started the VM (stopping it must work after that call's context ended).
	base context.Context

	// console is the serial console, kept by QEMU in a ring buffer and read over QMP.
	console *vm.RingConsole

	mu      sync.Mutex
	exitErr error
	exited  chan struct{}
	once    sync.Once
	stop    sync.Once
	stopErr error
}

func newServiceVM(ctx context.Context, svc *dagger.Service, host string, accel vm.Accel, started time.Time, log io.Writer) *serviceVM {
	base := context.WithoutCancel(ctx)
	ctx, cancel := context.WithCancel(base)
	v := &serviceVM{svc: svc, host: host, accel: accel, started: started, log: log, cancel: cancel, base: base, exited: make(chan struct{})}
	v.console = vm.FollowRing(ctx, vm.QMP{Network: "tcp", Address: net.JoinHostPort(host, strconv.Itoa(qmpPort))}, vm.RingOptions{})
	go func() {
		select {
		case <-v.console.Exited():
			v.markExited(v.console.ExitError())
		case <-ctx.Done():
		}
	}()
	return v
}

func (v *serviceVM) markExited(err error) {
	v.once.Do(func() {
		v.mu.Lock()
		v.exitErr = err
		v.mu.Unlock()
		close(v.exited)
	})
}

func (v *serviceVM) Accel() vm.Accel         { return v.accel }
func (v *serviceVM) Started() time.Time      { return v.started }
func (v *serviceVM) Addr(p int) string       { return net.JoinHostPort(v.host, strconv.Itoa(p)) }
func (v *serviceVM) Stderr() string          { return "" }
func (v *serviceVM) Exited() <-chan struct{} { return v.exited }

func (v *serviceVM) Serial() string { return v.console.String() }

// ConsoleState says how reading the console went (smoke.MultiUser names it when the console stays empty).
func (v *serviceVM) ConsoleState() string { return v.console.State() }

func (v *serviceVM) Status(ctx context.Context) (string, error) {
	return vm.QMP{Network: "tcp", Address: net.JoinHostPort(v.host, strconv.Itoa(qmpPort))}.Status(ctx)
}

func (v *serviceVM) ExitError() error {
	select {
	case <-v.exited:
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.exitErr
	default:
		return nil
	}
}

// Fail implements vm.Instance.
func (v *serviceVM) Fail(err error) {
	v.markExited(err)
	if cerr := v.Close(); cerr != nil {
		fmt.Fprintf(v.log, "imagemode vm: %v\n", cerr)
	}
}

// Close stops the service (QEMU is killed with its container).
func (v *serviceVM) Close() error {
	v.stop.Do(func() {
		v.cancel()
		ctx, cancel := context.WithTimeout(v.base, time.Minute)
		defer cancel()
		if _, err := v.svc.Stop(ctx, dagger.ServiceStopOpts{Kill: true}); err != nil {
			v.stopErr = fmt.Errorf("stopping the QEMU service: %w", err)
		}
		v.markExited(errors.New("QEMU was stopped"))
	})
	return v.stopErr
}
