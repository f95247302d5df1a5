package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrKVMFailed marks a guest that KVM could not run: QEMU paused it in QMP state internal-error, printed "KVM
// internal error", or the guest never wrote to its console. A caller that asked for AccelAuto boots it again: Boot
// then picks TCG.
var ErrKVMFailed = errors.New("KVM could not run the guest")

// Instance is one running QEMU (*VM: a process on this host, or in the Dagger module's toolbox container; tests
// plug in fakes). Probes, the smoke and life-cycle tests and the acceleration fallback see only this.
type Instance interface {
	// Accel is the acceleration the QEMU runs with (kvm or tcg).
	Accel() Accel
	// Started is when QEMU started: deadlines count from it.
	Started() time.Time
	// Addr is the host:port forwarded to guest port p.
	Addr(p int) string
	// Serial is the serial console so far.
	Serial() string
	// Stderr is the end of QEMU's own output ("" where it cannot be read).
	Stderr() string
	// Status asks QMP for the run state.
	Status(ctx context.Context) (string, error)
	// Exited is closed when QEMU has exited (or was failed); ExitError then says how.
	Exited() <-chan struct{}
	ExitError() error
	// Fail stops the VM and makes err its exit error: a guest KVM broke while QEMU "runs" (paused).
	Fail(err error)
	// Close stops the VM and removes what it left behind; calling it again is harmless.
	Close() error
}

// Launcher starts QEMU for a Config under one accelerator, somewhere.
type Launcher[I Instance] interface {
	Launch(ctx context.Context, cfg Config, accel Accel) (I, error)
	// MayUseKVM says whether AccelAuto should try KVM first (on this host: /dev/kvm opens; everywhere: KVM was
	// not found broken before).
	MayUseKVM() bool
}

// BootOptions tune the acceleration fallback.
type BootOptions struct {
	// Silence fails a KVM guest that wrote nothing to its console for this long (default 20 s): under KVM a
	// kernel with a serial console writes to it within a second or two, and on hosts whose KVM cannot run it the
	// guest stays "running" and silent for minutes before QEMU reports the internal error.
	Silence time.Duration
	// Poll is how often the run state is asked for (default 500 ms).
	Poll time.Duration
	// Log receives a line when KVM fails and the VM is restarted under TCG.
	Log io.Writer
}

func (o BootOptions) withDefaults() BootOptions {
	if o.Silence == 0 {
		o.Silence = 20 * time.Second
	}
	if o.Poll == 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o
}

// Boot starts a VM through l. kvm and tcg are used as asked. With AccelAuto it tries KVM when l.MayUseKVM, watches
// the fresh guest (QMP state internal-error, "KVM internal error" on QEMU's output, QEMU exiting, no console output
// within o.Silence) and restarts it under TCG when KVM fails, remembering that KVM is broken here. A KVM guest
// that breaks later is failed with ErrKVMFailed (QEMU pauses on an internal error; it does not exit), so the
// caller's probes stop at once instead of waiting for their deadline.
func Boot[I Instance](ctx context.Context, l Launcher[I], cfg Config, accel Accel, o BootOptions) (I, error) {
	o = o.withDefaults()
	var zero I
	switch accel {
	case AccelTCG:
		return l.Launch(ctx, cfg, AccelTCG)
	case AccelKVM:
		v, err := l.Launch(ctx, cfg, AccelKVM)
		if err == nil {
			go watchKVM(ctx, v, o)
		}
		return v, err
	case AccelAuto, "":
	default:
		return zero, fmt.Errorf("unknown acceleration %q", accel)
	}
	if !l.MayUseKVM() {
		return l.Launch(ctx, cfg, AccelTCG)
	}
	v, err := l.Launch(ctx, cfg, AccelKVM)
	if err != nil {
		RememberKVMBroken()
		fmt.Fprintf(o.Log, "imagemode vm: KVM did not start (%v); using TCG\n", firstLine(err.Error()))
		return l.Launch(ctx, cfg, AccelTCG)
	}
	reason := kvmFailed(ctx, v, o)
	if reason == "" {
		go watchKVM(ctx, v, o)
		return v, nil
	}
	if ctx.Err() != nil {
		return zero, errors.Join(ctx.Err(), v.Close())
	}
	if err := v.Close(); err != nil {
		return zero, fmt.Errorf("stopping the failed KVM guest: %w", err)
	}
	RememberKVMBroken()
	fmt.Fprintf(o.Log, "imagemode vm: %v (%s after QEMU started): restarting under TCG\n", reason, time.Since(v.Started()).Round(time.Second))
	return l.Launch(ctx, cfg, AccelTCG)
}

// kvmFailed watches a fresh KVM guest until it writes to its console; it returns why KVM failed, or "".
func kvmFailed(ctx context.Context, v Instance, o BootOptions) string {
	deadline := v.Started().Add(o.Silence)
	for {
		if m := kvmErrorMarker(v.Stderr()); m != "" {
			return fmt.Sprintf("QEMU printed %q", m)
		}
		select {
		case <-v.Exited():
			return fmt.Sprintf("QEMU exited under KVM: %v", v.ExitError())
		case <-ctx.Done():
			return "cancelled"
		default:
		}
		if st, err := v.Status(ctx); err == nil && st == "internal-error" {
			return "QMP run state internal-error under KVM"
		}
		if v.Serial() != "" {
			return ""
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("no console output within %s under KVM", o.Silence)
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(o.Poll, 200*time.Millisecond)):
		}
	}
}

// watchKVM fails a KVM guest that breaks after it started writing to its console.
func watchKVM(ctx context.Context, v Instance, o BootOptions) {
	t := time.NewTicker(o.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.Exited():
			return
		case <-t.C:
		}
		reason := ""
		if m := kvmErrorMarker(v.Stderr()); m != "" {
			reason = fmt.Sprintf("QEMU printed %q", m)
		} else if st, err := v.Status(ctx); err == nil && st == "internal-error" {
			reason = "QMP run state internal-error"
		}
		if reason != "" {
			RememberKVMBroken()
			v.Fail(fmt.Errorf("%w: %s", ErrKVMFailed, reason))
			return
		}
	}
}

// kvmErrorMarker finds what QEMU prints when KVM cannot run a guest.
func kvmErrorMarker(stderr string) string {
	for _, m := range []string{"KVM internal error", "failed to set MSR"} {
		if strings.Contains(stderr, m) {
			return m
		}
	}
	return ""
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
