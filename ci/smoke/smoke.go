package smoke

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/imagemode/imagemode/ci/ephemeral"
	"github.com/imagemode/imagemode/ci/guest"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/vm"
)

// Modes.
const (
	ModeEphemeral = "ephemeral"
	ModeDisk      = "disk"
)

// SerialTailLines is how much of the serial console a failed verdict keeps.
const SerialTailLines = 40

// fatalMarkers mark guests that will never come up.
var fatalMarkers = []string{"Kernel panic - not syncing", "Gave up waiting for root", "emergency mode"}

// Probes returns the probes of a layer: always multi-user, plus what layers.yaml declares.
func Probes(s layers.Smoke) ([]Probe, error) {
	out := []Probe{MultiUser{}}
	for _, h := range s.HTTP {
		out = append(out, HTTP{Path: h.Path, Status: h.Status, Expect: h.Expect})
	}
	if s.MariaDB {
		m, err := NewMariaDB()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// RunOptions tune how probes are retried.
type RunOptions struct {
	// Deadline bounds the whole run from the VM's start.
	Deadline time.Duration
	// Interval is the pause between attempts of one probe.
	Interval time.Duration
	// WrongAnswerGrace is how long a probe may keep getting a wrong answer (ErrWrongAnswer) after the guest reached
	// multi-user (after the run's start when no multi-user probe runs) before it fails at once; default 30 s.
	WrongAnswerGrace time.Duration
}

// booted is what Run needs of a VM.
type booted interface {
	Target
	Started() time.Time
	Exited() <-chan struct{}
	ExitError() error
}

// Run retries every probe concurrently until it passes or the deadline (counted from the VM's start) passes. It
// stops early when the guest cannot come up: QEMU exited, or the console shows a kernel panic or emergency mode.
func Run(ctx context.Context, g booted, probes []Probe, o RunOptions) ([]ProbeResult, error) {
	if o.Interval == 0 {
		o.Interval = 200 * time.Millisecond
	}
	if o.WrongAnswerGrace == 0 {
		o.WrongAnswerGrace = 30 * time.Second
	}
	ctx, cancel := context.WithDeadline(ctx, g.Started().Add(o.Deadline))
	defer cancel()
	results := make([]ProbeResult, len(probes))
	var fatal error
	var mu sync.Mutex
	var wg sync.WaitGroup
	// ready is when the guest reached multi-user (the run's start without a multi-user probe): wrong answers
	// count from then.
	var ready time.Time
	hasMultiUser := false
	for _, p := range probes {
		hasMultiUser = hasMultiUser || p.Name() == (MultiUser{}).Name()
	}
	if !hasMultiUser {
		ready = time.Now()
	}
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := ProbeResult{Name: p.Name()}
			var last error
			var wrongSince time.Time
			for {
				r.Attempts++
				detail, err := p.Check(ctx, g)
				if err == nil {
					r.OK, r.Detail = true, detail
					r.SinceBootMS = time.Since(g.Started()).Milliseconds()
					if p.Name() == (MultiUser{}).Name() {
						mu.Lock()
						ready = time.Now()
						mu.Unlock()
					}
					break
				}
				last = err
				if errors.Is(err, ErrWrongAnswer) {
					if wrongSince.IsZero() {
						wrongSince = time.Now()
					}
					mu.Lock()
					from := ready
					mu.Unlock()
					if !from.IsZero() {
						if wrongSince.After(from) {
							from = wrongSince
						}
						if time.Since(from) >= o.WrongAnswerGrace {
							r.Detail = fmt.Sprintf("%v, still %s after the guest reached multi-user", err, o.WrongAnswerGrace)
							results[i] = r
							mu.Lock()
							if fatal == nil {
								fatal = fmt.Errorf("%s: %s: failed without waiting for the deadline", r.Name, r.Detail)
							}
							mu.Unlock()
							cancel() // the verdict is decided
							return
						}
					}
				} else {
					wrongSince = time.Time{}
				}
				select {
				case <-ctx.Done():
				case <-time.After(o.Interval):
				}
				if ctx.Err() != nil {
					r.Detail = last.Error()
					break
				}
			}
			results[i] = r
		}()
	}
	// Watch for guests that will never answer.
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-g.Exited():
				err := g.ExitError()
				if m := fatalMarker(g.Serial()); m != "" {
					err = fmt.Errorf("the guest cannot come up: its console shows %q; %w", m, err)
				}
				mu.Lock()
				fatal = err
				mu.Unlock()
				cancel()
				return
			case <-t.C:
				if m := fatalMarker(g.Serial()); m != "" {
					mu.Lock()
					fatal = fmt.Errorf("the guest cannot come up: its console shows %q", m)
					mu.Unlock()
					cancel()
					return
				}
			}
		}
	}()
	wg.Wait()
	cancel()
	<-watchDone
	mu.Lock()
	defer mu.Unlock()
	return results, fatal
}

func fatalMarker(serial string) string {
	for _, m := range fatalMarkers {
		if strings.Contains(serial, m) {
			return m
		}
	}
	return ""
}

// Spec is one smoke test.
type Spec struct {
	// Image is the image by digest (repository@sha256:...).
	Image string
	// Layer names the layer (for the verdict) and Smoke its declared probes.
	Layer   string
	Profile string
	// Commit is the run's commit, recorded in the verdict.
	Commit string
	// RunID is the run's id, recorded in the verdict.
	RunID string
	Smoke layers.Smoke
	Mode  string
	Accel vm.Accel
	// Deadline bounds boot plus probes (default 180 s).
	Deadline time.Duration
	MemoryMB int
	// WorkDir holds the boot files (default: the system temp dir).
	WorkDir string
	// Extra files written into the ephemeral root filesystem (e.g. an SSH key for root).
	Extra []ephemeral.File
}

// Prepared is an image made ready to boot by a Booter.
type Prepared struct {
	// Config boots it (kernel, initramfs and command line, or a disk); the Tester adds forwards and credentials.
	Config vm.Config
	// Probes are the probes to run: the layer's, plus what the mode adds (SSH checks of a disk boot).
	Probes []Probe
	// Detail describes the boot for the log (kernel version, command line).
	Detail string
	// Cleanup removes what preparing made (may be nil).
	Cleanup func() error
	// Start boots a configuration of the prepared image through vm.Boot under an accelerator; the Tester calls it
	// again (auto: then under TCG) when KVM broke the first boot.
	Start func(ctx context.Context, cfg vm.Config, accel vm.Accel) (vm.Instance, error)
}

// Booter prepares images and boots them. HostBooter does it with QEMU on the machine it runs on (a host, or the
// Dagger module's toolbox container in the engine); everything else — probes, the KVM fallback, deadlines, verdicts
// — is the Tester's. Tests plug in fakes.
type Booter interface {
	// Prepare readies s.Image for booting; probes are the layer's declared probes.
	Prepare(ctx context.Context, s Spec, probes []Probe) (*Prepared, error)
	// Forwarding says how probes reach guest ports: the bind address of QEMU's forwards, and whether the host port
	// equals the guest port or a free one is picked.
	Forwarding() (bind string, samePort bool)
}

// HostBooter boots VMs with QEMU here. Ephemeral: the image is pulled and unpacked with go-containerregistry, its
// kernel and a mkfs.ext4 -d root disk are booted. Disk: a bootc-image-builder disk of the image made elsewhere
// (the Dagger module runs the builder's container) is booted, and SSH probes check what bootc booted.
type HostBooter struct {
	Reg *registry.Client
	// Disks are the disks of disk mode, by image reference (repository@sha256:...).
	Disks map[string]string
	// SSHKey is the key the disks authorize for SSHUser (disk mode).
	SSHKey  guest.Key
	SSHUser string
}

// Prepare implements Booter.
func (h HostBooter) Prepare(ctx context.Context, s Spec, probes []Probe) (*Prepared, error) {
	start := func(ctx context.Context, cfg vm.Config, accel vm.Accel) (vm.Instance, error) {
		return vm.Start(ctx, cfg, accel)
	}
	if s.Mode == ModeDisk {
		disk, ok := h.Disks[s.Image]
		if !ok {
			return nil, fmt.Errorf("disk mode: no disk of %s (made with the disk builder: `dagger call ... smoke-test --disk`, or --disk-file IMAGE=FILE)", s.Image)
		}
		if h.SSHKey.Signer == nil {
			return nil, fmt.Errorf("disk mode: no SSH key for the disk of %s (--ssh-key-file)", s.Image)
		}
		_, digest, err := registry.SplitDigestRef(s.Image)
		if err != nil {
			return nil, err
		}
		user := h.SSHUser
		if user == "" {
			user = "bootc-user"
		}
		ssh := SSH{User: user, Key: h.SSHKey, Transcript: &guest.Transcript{}, Sudo: user != "root"}
		probes = append(WithSSH(probes, ssh), BootcBooted{SSH: ssh, Digest: digest}, NoFailedUnits{SSH: ssh})
		return &Prepared{
			Config: vm.Config{Disk: disk, Format: "qcow2", Snapshot: true, NoReboot: true, MemoryMB: s.MemoryMB},
			Probes: probes, Detail: "bootc-image-builder disk " + disk, Start: start,
		}, nil
	}
	boot, err := ephemeral.FromImage(ctx, h.Reg, s.Image, s.WorkDir, s.Extra...)
	if err != nil {
		return nil, err
	}
	return &Prepared{
		Config: vm.Config{Kernel: boot.Kernel, Initrd: boot.Initrd, Append: boot.Cmdline(), Disk: boot.Disk, Format: "raw",
			Snapshot: true, NoReboot: true, MemoryMB: s.MemoryMB},
		Probes: probes, Cleanup: boot.Cleanup,
		Detail: fmt.Sprintf("kernel %s, %q", boot.KernelVersion, boot.Cmdline()),
		Start:  start,
	}, nil
}

// Forwarding implements Booter: free ports on 127.0.0.1.
func (HostBooter) Forwarding() (string, bool) { return "", false }

// Tester runs smoke tests.
type Tester struct {
	booter Booter
	log    io.Writer
	pool   *vm.Pool
}

// NewTester returns a Tester booting on this host, at most parallel VMs at once.
func NewTester(reg *registry.Client, log io.Writer, parallel int) *Tester {
	return NewTesterWith(HostBooter{Reg: reg}, log, parallel)
}

// NewTesterWith returns a Tester booting with b, at most parallel VMs at once.
func NewTesterWith(b Booter, log io.Writer, parallel int) *Tester {
	if log == nil {
		log = io.Discard
	}
	return &Tester{booter: b, log: log, pool: vm.NewPool(parallel)}
}

func (t *Tester) logf(format string, args ...any) {
	fmt.Fprintf(t.log, "imagemode smoke: "+format+"\n", args...)
}

// Test boots the image and returns its verdict. An error means the test could not be run (image unreadable, QEMU
// missing); a guest that does not pass yields a Fail verdict, not an error. With AccelAuto, a guest that KVM
// breaks (vm.ErrKVMFailed) is booted again under TCG with a fresh deadline; the verdict records the accelerator
// of the boot it judges.
func (t *Tester) Test(ctx context.Context, s Spec) (Verdict, error) {
	start := time.Now()
	_, digest, err := registry.SplitDigestRef(s.Image)
	if err != nil {
		return Verdict{}, fmt.Errorf("smoke tests run on digests: %w", err)
	}
	if s.Mode == "" {
		s.Mode = ModeEphemeral
	}
	if s.Mode != ModeEphemeral && s.Mode != ModeDisk {
		return Verdict{}, fmt.Errorf("mode %q: want %s or %s", s.Mode, ModeEphemeral, ModeDisk)
	}
	if s.Deadline == 0 {
		s.Deadline = 180 * time.Second
	}
	release, ok := t.pool.Acquire(ctx.Done())
	defer release()
	if !ok {
		return Verdict{}, ctx.Err()
	}
	v := Verdict{Image: s.Image, Digest: digest, Layer: s.Layer, Profile: s.Profile, Commit: s.Commit, RunID: s.RunID, Mode: s.Mode, Started: start.UTC()}
	declared, err := Probes(s.Smoke)
	if err != nil {
		return Verdict{}, err
	}
	t.logf("%s: preparing a %s boot of %s", s.Layer, s.Mode, s.Image)
	prep, err := t.booter.Prepare(ctx, s, declared)
	if err != nil {
		return Verdict{}, err
	}
	if prep.Cleanup != nil {
		defer func() {
			if err := prep.Cleanup(); err != nil {
				t.logf("%v", err)
			}
		}()
	}
	cfg, probes := prep.Config, prep.Probes
	if s.MemoryMB != 0 {
		cfg.MemoryMB = s.MemoryMB
	}
	bind, samePort := t.booter.Forwarding()
	Attach(&cfg, probes, bind, samePort)
	var results []ProbeResult
	var fatal error
	var serial string
	for attempt := 1; ; attempt++ {
		machine, err := prep.Start(ctx, cfg, s.Accel)
		if err != nil {
			return Verdict{}, err
		}
		v.Accel = string(machine.Accel())
		t.logf("%s: booting (%s, %s)", s.Layer, machine.Accel(), prep.Detail)
		results, fatal = Run(ctx, machine, probes, RunOptions{Deadline: s.Deadline})
		serial = machine.Serial()
		if err := machine.Close(); err != nil {
			return Verdict{}, err
		}
		if errors.Is(fatal, vm.ErrKVMFailed) && (s.Accel == vm.AccelAuto || s.Accel == "") && attempt == 1 {
			t.logf("%s: %v; booting again under TCG", s.Layer, fatal)
			continue
		}
		break
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return Verdict{}, ctx.Err()
	}
	v.Probes = results
	v.DurationMS = time.Since(start).Milliseconds()
	v.Verdict = Pass
	var failed []string
	for _, r := range results {
		if !r.OK {
			failed = append(failed, r.Name+": "+r.Detail)
		}
	}
	switch {
	case fatal != nil:
		v.Verdict, v.Reason = Fail, fatal.Error()
	case len(failed) > 0:
		v.Verdict = Fail
		v.Reason = fmt.Sprintf("not passed within %s: %s", s.Deadline, strings.Join(failed, "; "))
	}
	if v.Verdict == Fail {
		v.SerialTail = vm.Tail(serial, SerialTailLines)
	}
	t.logf("%s: %s in %s (%s)", s.Layer, strings.ToUpper(v.Verdict), time.Duration(v.DurationMS)*time.Millisecond, v.Accel)
	return v, nil
}

// ReadyMS is the time from the judged VM's start until its last probe passed: the verdict's boot-to-ready time
// (0 when a probe did not pass).
func (v Verdict) ReadyMS() int64 {
	var ms int64
	for _, p := range v.Probes {
		if !p.OK {
			return 0
		}
		ms = max(ms, p.SinceBootMS)
	}
	return ms
}

// since adapts a Target that keeps running (a VM between reboots) to Run: the deadline counts from now.
type since struct {
	Target
	start time.Time
}

func (s since) Started() time.Time      { return s.start }
func (s since) Exited() <-chan struct{} { return nil }
func (s since) ExitError() error        { return nil }

// RunAfter retries the probes against t until they pass or deadline passes from now. Multi-user is judged on the
// console of the current boot only when it is among probes; life-cycle steps pass only service probes.
func RunAfter(ctx context.Context, t Target, probes []Probe, deadline time.Duration) ([]ProbeResult, error) {
	return Run(ctx, since{Target: t, start: time.Now()}, probes, RunOptions{Deadline: deadline})
}

// Attach adds to a VM what the probes need: a forward per guest port (once each; bind "" is 127.0.0.1; with
// samePort the host port equals the guest port, as inside a service container, else a free one is picked) and the
// MariaDB credential. It returns the guest ports it added.
func Attach(cfg *vm.Config, probes []Probe, bind string, samePort bool) []int {
	if cfg.Credentials == nil {
		cfg.Credentials = map[string]string{}
	}
	have := map[int]bool{}
	for _, f := range cfg.Forwards {
		have[f.Guest] = true
	}
	var added []int
	for _, p := range probes {
		for _, gp := range p.GuestPorts() {
			if have[gp] {
				continue
			}
			have[gp] = true
			f := vm.Forward{Guest: gp, Bind: bind}
			if samePort {
				f.Host = gp
			}
			cfg.Forwards = append(cfg.Forwards, f)
			added = append(added, gp)
		}
		if m, ok := p.(MariaDB); ok {
			cfg.Credentials[CredentialName] = m.Credential()
		}
	}
	return added
}

// WithSSH lets the multi-user probe ask the guest over SSH when its console says nothing (disk mode).
func WithSSH(probes []Probe, ssh SSH) []Probe {
	out := make([]Probe, len(probes))
	for i, p := range probes {
		if _, ok := p.(MultiUser); ok {
			p = MultiUser{SSH: &ssh}
		}
		out[i] = p
	}
	return out
}

// Services drops the multi-user probe: after reboots the console keeps earlier boots' lines, so life cycles judge
// it once, at the start.
func Services(probes []Probe) []Probe {
	var out []Probe
	for _, p := range probes {
		if _, ok := p.(MultiUser); !ok {
			out = append(out, p)
		}
	}
	return out
}
