// Package vm runs QEMU virtual machines for the smoke and life-cycle tests: an argv builder (q35, default CPU
// model, virtio disk and network, user networking with host port forwards, serial console to a file, a QMP socket),
// acceleration auto|kvm|tcg with a fallback to TCG when KVM cannot run the guest, deadlines, bounded parallelism and
// a teardown that leaves no QEMU behind — on success, failure, cancellation or a crash of the caller.
package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Accel is the acceleration mode.
type Accel string

// Acceleration modes.
const (
	AccelAuto Accel = "auto"
	AccelKVM  Accel = "kvm"
	AccelTCG  Accel = "tcg"
)

// ParseAccel validates an --accel value.
func ParseAccel(s string) (Accel, error) {
	switch Accel(s) {
	case AccelAuto, AccelKVM, AccelTCG:
		return Accel(s), nil
	case "":
		return AccelAuto, nil
	}
	return "", fmt.Errorf("--accel %q: want auto, kvm or tcg", s)
}

// Forward maps a guest TCP port to a host port on 127.0.0.1 (0: pick a free one).
type Forward struct {
	Guest int
	Host  int
	// Bind is the host address (default 127.0.0.1; "0.0.0.0" inside a Dagger service container).
	Bind string
}

// Config describes one VM.
type Config struct {
	// Binary is the QEMU executable (default qemu-system-x86_64).
	Binary string
	// Kernel, Initrd and Append boot a kernel directly (ephemeral mode); empty Kernel boots the disk.
	Kernel, Initrd, Append string
	// Disk is the boot disk; Format its format (raw, qcow2). With Snapshot the disk is never written.
	Disk     string
	Format   string
	Snapshot bool
	// ExtraDisks are raw disks attached after the boot disk (vdb, vdc, ...), written to (persistent state).
	ExtraDisks []string
	// MemoryMB and CPUs size the guest (defaults 1536 and 2).
	MemoryMB int
	CPUs     int
	Forwards []Forward
	// Credentials are systemd credentials passed with SMBIOS type 11 (name → value).
	Credentials map[string]string
	// NoReboot makes QEMU exit when the guest reboots or panics (smoke tests); life-cycle tests reboot.
	NoReboot bool
	// Dir holds the serial log and the QMP socket (default: a temporary folder removed by Stop).
	Dir string
}

// Args returns QEMU's argument vector, with the host ports already chosen. accel is kvm or tcg (Boot decides what
// auto means; given auto, Args uses TCG, which always works). serial is a QEMU character device
// ("file:PATH", "tcp:HOST:PORT,server=on,wait=off"); qmp is a character device ("unix:PATH,server=on,wait=off",
// "tcp:HOST:PORT,server=on,wait=off").
func (c Config) Args(accel Accel, serial, qmp string) []string {
	mem, cpus := c.MemoryMB, c.CPUs
	if mem == 0 {
		mem = 1536
	}
	if cpus == 0 {
		cpus = 2
	}
	args := []string{"-machine", "q35"}
	if accel != AccelKVM {
		accel = AccelTCG
	}
	args = append(args, "-accel", string(accel))
	args = append(args,
		"-m", strconv.Itoa(mem),
		"-smp", strconv.Itoa(cpus),
		"-display", "none",
		"-vga", "none",
	)
	args = append(args, "-serial", serial)
	args = append(args,
		"-qmp", qmp,
		"-device", "virtio-rng-pci",
	)
	if c.NoReboot {
		args = append(args, "-no-reboot")
	}
	if c.Kernel != "" {
		args = append(args, "-kernel", c.Kernel)
		if c.Initrd != "" {
			args = append(args, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			args = append(args, "-append", c.Append)
		}
	}
	format := c.Format
	if format == "" {
		format = "raw"
	}
	drive := "file=" + escape(c.Disk) + ",if=virtio,format=" + format
	if c.Snapshot {
		drive += ",snapshot=on"
	}
	args = append(args, "-drive", drive)
	for _, d := range c.ExtraDisks {
		args = append(args, "-drive", "file="+escape(d)+",if=virtio,format=raw")
	}
	netdev := "user,id=net0"
	for _, f := range c.Forwards {
		bind := f.Bind
		if bind == "" {
			bind = "127.0.0.1"
		}
		netdev += fmt.Sprintf(",hostfwd=tcp:%s:%d-:%d", bind, f.Host, f.Guest)
	}
	args = append(args, "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0")
	names := make([]string, 0, len(c.Credentials))
	for n := range c.Credentials {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		args = append(args, "-smbios", "type=11,value=io.systemd.credential:"+escape(n+"="+c.Credentials[n]))
	}
	return args
}

// escape doubles commas, QEMU's option separator.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	return port, nil
}

// VM is a running QEMU.
type VM struct {
	cfg      Config
	accel    Accel
	cmd      *exec.Cmd
	dir      string
	ownDir   bool
	serial   string
	qmp      string
	started  time.Time
	exited   chan struct{}
	exitErr  error
	stderr   *tailWriter
	stopOnce sync.Once
	stopErr  error
	failMu   sync.Mutex
	failErr  error
}

// Start boots the VM on this host. With AccelAuto it uses KVM when /dev/kvm opens and falls back to TCG when KVM
// fails to run the guest (see Boot), remembering the answer for this host. The caller must Close the VM; Start
// stops it itself when ctx ends.
func Start(ctx context.Context, cfg Config, accel Accel) (*VM, error) {
	if cfg.Binary == "" {
		cfg.Binary = "qemu-system-x86_64"
	}
	if _, err := exec.LookPath(cfg.Binary); err != nil {
		return nil, fmt.Errorf("QEMU is not installed (%s): %w", cfg.Binary, err)
	}
	for i := range cfg.Forwards {
		if cfg.Forwards[i].Host == 0 {
			p, err := FreePort()
			if err != nil {
				return nil, err
			}
			cfg.Forwards[i].Host = p
		}
	}
	return Boot[*VM](ctx, HostLauncher{}, cfg, accel, BootOptions{Log: os.Stderr})
}

// HostLauncher starts QEMU as a process of this host.
type HostLauncher struct{}

// Launch implements Launcher.
func (HostLauncher) Launch(ctx context.Context, cfg Config, accel Accel) (*VM, error) {
	return start(ctx, cfg, accel)
}

// MayUseKVM implements Launcher: /dev/kvm opens and KVM was not found broken here.
func (HostLauncher) MayUseKVM() bool { return kvmUsable() }

func start(ctx context.Context, cfg Config, accel Accel) (*VM, error) {
	v := &VM{cfg: cfg, accel: accel, exited: make(chan struct{}), stderr: &tailWriter{max: 50}}
	v.dir = cfg.Dir
	if v.dir == "" {
		d, err := os.MkdirTemp("", "imagemode-vm-")
		if err != nil {
			return nil, fmt.Errorf("creating the VM folder: %w", err)
		}
		v.dir, v.ownDir = d, true
	}
	v.serial = filepath.Join(v.dir, "serial.log")
	// QMP socket paths are limited to ~107 bytes: keep it short.
	v.qmp = filepath.Join(v.dir, "qmp.sock")
	if len(v.qmp) > 100 {
		v.qmp = filepath.Join(os.TempDir(), fmt.Sprintf("im-qmp-%d-%d.sock", os.Getpid(), time.Now().UnixNano()))
	}
	if err := os.WriteFile(v.serial, nil, 0o644); err != nil {
		v.cleanupDir()
		return nil, fmt.Errorf("creating the serial log: %w", err)
	}
	args := cfg.Args(accel, "file:"+v.serial, "unix:"+v.qmp+",server=on,wait=off")
	v.cmd = exec.Command(cfg.Binary, args...)
	v.cmd.Stdout = v.stderr
	v.cmd.Stderr = v.stderr
	// QEMU dies with the process that started it (Pdeathsig) and is killed as a process group on Stop.
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}

	// Pdeathsig fires when the *thread* that forked exits, and Go retires threads at will: start QEMU from a
	// goroutine locked to its thread for the lifetime of the process.
	startErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := v.cmd.Start(); err != nil {
			startErr <- err
			close(v.exited)
			return
		}
		v.started = time.Now()
		startErr <- nil
		v.exitErr = v.cmd.Wait()
		close(v.exited)
	}()
	if err := <-startErr; err != nil {
		v.cleanupDir()
		return nil, fmt.Errorf("starting QEMU: %w", err)
	}
	// QEMU is ready for QMP once its socket exists; a QEMU that exits right away (bad arguments) says why.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(v.qmp); err == nil {
			break
		}
		select {
		case <-v.exited:
			err := v.ExitError()
			v.cleanupDir()
			return nil, fmt.Errorf("QEMU did not start: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			if err := v.Stop(); err != nil {
				return nil, fmt.Errorf("QEMU did not open its QMP socket in 10 s; stopping it: %w", err)
			}
			v.cleanupDir()
			return nil, errors.New("QEMU did not open its QMP socket in 10 s")
		}
	}
	go func() {
		select {
		case <-ctx.Done():
			if err := v.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "imagemode: stopping the VM after cancellation: %v\n", err)
			}
		case <-v.exited:
		}
	}()
	return v, nil
}

// Accel is the acceleration the VM runs with.
func (v *VM) Accel() Accel { return v.accel }

// Started is when QEMU started.
func (v *VM) Started() time.Time { return v.started }

// Pid is QEMU's process id.
func (v *VM) Pid() int { return v.cmd.Process.Pid }

// HostPort returns the host port forwarded to guest port p (0 if none).
func (v *VM) HostPort(p int) int {
	for _, f := range v.cfg.Forwards {
		if f.Guest == p {
			return f.Host
		}
	}
	return 0
}

// Addr returns 127.0.0.1:<host port> forwarded to guest port p.
func (v *VM) Addr(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(v.HostPort(p))) }

// Exited is closed when QEMU has exited.
func (v *VM) Exited() <-chan struct{} { return v.exited }

// ExitError describes how QEMU exited (nil while it runs).
func (v *VM) ExitError() error {
	select {
	case <-v.exited:
		v.failMu.Lock()
		ferr := v.failErr
		v.failMu.Unlock()
		if ferr != nil {
			return ferr
		}
		if v.exitErr != nil {
			return fmt.Errorf("QEMU exited: %w; stderr: %s", v.exitErr, strings.TrimSpace(v.stderr.String()))
		}
		return errors.New("QEMU exited (the guest powered off, rebooted with -no-reboot, or panicked)")
	default:
		return nil
	}
}

// Serial returns the serial console output so far.
func (v *VM) Serial() string {
	b, err := os.ReadFile(v.serial)
	if err != nil {
		return ""
	}
	return string(b)
}

// SerialTail returns the last n lines of the serial console.
func (v *VM) SerialTail(n int) string { return Tail(v.Serial(), n) }

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stderr returns the end of QEMU's own output.
func (v *VM) Stderr() string { return v.stderr.String() }

// Status asks QMP for the run state (running, paused, internal-error, shutdown, ...).
func (v *VM) Status(ctx context.Context) (string, error) {
	return QMP{Network: "unix", Address: v.qmp}.Status(ctx)
}

// Fail implements Instance: it stops QEMU and makes err its exit error.
func (v *VM) Fail(err error) {
	v.failMu.Lock()
	if v.failErr == nil {
		v.failErr = err
	}
	v.failMu.Unlock()
	if serr := v.Stop(); serr != nil {
		fmt.Fprintf(os.Stderr, "imagemode: stopping a failed VM: %v\n", serr)
	}
}

// Stop shuts QEMU down: QMP quit, then SIGKILL to its process group after a grace period. It waits for the
// process and removes the VM's temporary folder. Calling Stop again is harmless.
func (v *VM) Stop() error {
	v.stopOnce.Do(func() {
		select {
		case <-v.exited:
		default:
			qerr := QMP{Network: "unix", Address: v.qmp}.Quit(3 * time.Second)
			grace := 3 * time.Second
			if qerr != nil {
				grace = 0
			}
			select {
			case <-v.exited:
			case <-time.After(grace):
				if err := syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
					v.stopErr = fmt.Errorf("killing QEMU: %w", err)
				}
				<-v.exited
			}
		}
		if v.qmp != "" {
			if err := os.Remove(v.qmp); err != nil && !os.IsNotExist(err) && v.stopErr == nil {
				v.stopErr = fmt.Errorf("removing the QMP socket: %w", err)
			}
		}
	})
	return v.stopErr
}

// Close stops the VM and removes its folder (when Start made it).
func (v *VM) Close() error {
	err := v.Stop()
	v.cleanupDir()
	return err
}

func (v *VM) cleanupDir() {
	if v.ownDir {
		if err := os.RemoveAll(v.dir); err != nil {
			fmt.Fprintf(os.Stderr, "imagemode: removing %s: %v\n", v.dir, err)
		}
	}
}

// tailWriter keeps the last max lines written to it; safe for concurrent use.
type tailWriter struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  string
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.part + string(p)
	parts := strings.Split(s, "\n")
	t.part = parts[len(parts)-1]
	t.lines = append(t.lines, parts[:len(parts)-1]...)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(append(append([]string(nil), t.lines...), t.part), "\n")
}
