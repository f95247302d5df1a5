package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeQMP is a QMP server on a real socket answering query-status with whatever state is set.
type fakeQMP struct {
	l     net.Listener
	mu    sync.Mutex
	state string
}

func newFakeQMP(t *testing.T) *fakeQMP {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeQMP{l: l, state: "running"}
	go f.serve()
	t.Cleanup(func() { l.Close() })
	return f
}

func (f *fakeQMP) set(s string) {
	f.mu.Lock()
	f.state = s
	f.mu.Unlock()
}

func (f *fakeQMP) serve() {
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			fmt.Fprintln(c, `{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}`)
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				switch {
				case strings.Contains(line, "qmp_capabilities"):
					fmt.Fprintln(c, `{"return": {}}`)
				case strings.Contains(line, "query-status"):
					f.mu.Lock()
					st := f.state
					f.mu.Unlock()
					fmt.Fprintf(c, "{\"event\": \"STOP\"}\n{\"return\": {\"status\": %q, \"running\": false}}\n", st)
				default:
					fmt.Fprintln(c, `{"error": {"class": "CommandNotFound"}}`)
				}
			}
		}()
	}
}

// fakeVM is an Instance whose console and QMP state the test controls.
type fakeVM struct {
	accel   Accel
	qmp     *fakeQMP
	started time.Time
	mu      sync.Mutex
	serial  string
	exited  chan struct{}
	once    sync.Once
	err     error
}

func (v *fakeVM) Accel() Accel       { return v.accel }
func (v *fakeVM) Started() time.Time { return v.started }
func (v *fakeVM) Addr(int) string    { return "127.0.0.1:1" }
func (v *fakeVM) Stderr() string     { return "" }
func (v *fakeVM) Serial() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.serial
}
func (v *fakeVM) write(s string) {
	v.mu.Lock()
	v.serial += s
	v.mu.Unlock()
}
func (v *fakeVM) Status(ctx context.Context) (string, error) {
	return QMP{Network: "tcp", Address: v.qmp.l.Addr().String()}.Status(ctx)
}
func (v *fakeVM) Exited() <-chan struct{} { return v.exited }
func (v *fakeVM) ExitError() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}
func (v *fakeVM) Fail(err error) {
	v.mu.Lock()
	v.err = err
	v.mu.Unlock()
	v.once.Do(func() { close(v.exited) })
}
func (v *fakeVM) Close() error { v.once.Do(func() { close(v.exited) }); return nil }

// fakeLauncher makes fake VMs; kvm decides what a KVM guest does after it starts.
type fakeLauncher struct {
	t        *testing.T
	mayKVM   bool
	kvm      func(v *fakeVM)
	launched []Accel
}

func (l *fakeLauncher) MayUseKVM() bool { return l.mayKVM && !KVMKnownBroken() }

func (l *fakeLauncher) Launch(ctx context.Context, cfg Config, accel Accel) (*fakeVM, error) {
	l.launched = append(l.launched, accel)
	v := &fakeVM{accel: accel, qmp: newFakeQMP(l.t), started: time.Now(), exited: make(chan struct{})}
	if accel == AccelKVM {
		go l.kvm(v)
	} else {
		v.write("Linux version 6.1 (tcg)\n")
	}
	return v, nil
}

// isolateKVMMemory gives the test its own marker folder and forgets what the process knew about KVM.
func isolateKVMMemory(t *testing.T) {
	t.Setenv("IMAGEMODE_CACHE", t.TempDir())
	kvmMu.Lock()
	kvmBroken = false
	kvmMu.Unlock()
	t.Cleanup(func() {
		kvmMu.Lock()
		kvmBroken = false
		kvmMu.Unlock()
	})
}

// TestBootFallsBackOnInternalError: a KVM guest that QEMU pauses in internal-error (it does not exit) is restarted
// under TCG at once, not after the silence window, and KVM is remembered as broken.
func TestBootFallsBackOnInternalError(t *testing.T) {
	isolateKVMMemory(t)
	l := &fakeLauncher{t: t, mayKVM: true, kvm: func(v *fakeVM) { v.qmp.set("internal-error") }}
	start := time.Now()
	v, err := Boot[*fakeVM](t.Context(), l, Config{}, AccelAuto, BootOptions{Silence: 10 * time.Second, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if v.Accel() != AccelTCG || fmt.Sprint(l.launched) != "[kvm tcg]" {
		t.Errorf("accel %s, launched %v; want tcg after [kvm tcg]", v.Accel(), l.launched)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the fallback took %s: the internal error was not noticed", d)
	}
	if !KVMKnownBroken() {
		t.Error("KVM not remembered as broken")
	}
	// The next auto boot goes straight to TCG.
	l.launched = nil
	if v, err := Boot[*fakeVM](t.Context(), l, Config{}, AccelAuto, BootOptions{}); err != nil || v.Accel() != AccelTCG || len(l.launched) != 1 {
		t.Errorf("second boot: %v, launched %v", err, l.launched)
	}
}

// TestBootFallsBackOnSilence: a KVM guest that stays silent is restarted under TCG after the silence window.
func TestBootFallsBackOnSilence(t *testing.T) {
	isolateKVMMemory(t)
	l := &fakeLauncher{t: t, mayKVM: true, kvm: func(v *fakeVM) {}}
	v, err := Boot[*fakeVM](t.Context(), l, Config{}, AccelAuto, BootOptions{Silence: 300 * time.Millisecond, Poll: 20 * time.Millisecond})
	if err != nil || v.Accel() != AccelTCG {
		t.Fatalf("Boot = %v, %v; want a TCG guest", v, err)
	}
}

// TestBootKeepsWorkingKVM: a KVM guest that writes to its console is kept.
func TestBootKeepsWorkingKVM(t *testing.T) {
	isolateKVMMemory(t)
	l := &fakeLauncher{t: t, mayKVM: true, kvm: func(v *fakeVM) { v.write("Linux version 6.1 (kvm)\n") }}
	v, err := Boot[*fakeVM](t.Context(), l, Config{}, AccelAuto, BootOptions{Silence: 2 * time.Second, Poll: 20 * time.Millisecond})
	if err != nil || v.Accel() != AccelKVM {
		t.Fatalf("Boot = %v, %v; want the KVM guest", v, err)
	}
	if KVMKnownBroken() {
		t.Error("a working KVM was remembered as broken")
	}
}

// TestWatchFailsLateInternalError: a KVM guest that breaks after it started talking is failed with ErrKVMFailed,
// so probes stop instead of waiting for their deadline.
func TestWatchFailsLateInternalError(t *testing.T) {
	isolateKVMMemory(t)
	l := &fakeLauncher{t: t, mayKVM: true, kvm: func(v *fakeVM) {
		v.write("Linux version 6.1 (kvm)\n")
		time.Sleep(300 * time.Millisecond)
		v.qmp.set("internal-error")
	}}
	v, err := Boot[*fakeVM](t.Context(), l, Config{}, AccelAuto, BootOptions{Silence: 2 * time.Second, Poll: 20 * time.Millisecond})
	if err != nil || v.Accel() != AccelKVM {
		t.Fatalf("Boot = %v, %v", v, err)
	}
	select {
	case <-v.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("the paused guest was never failed")
	}
	if !errors.Is(v.ExitError(), ErrKVMFailed) {
		t.Errorf("exit error %v; want ErrKVMFailed", v.ExitError())
	}
}

// TestBootNoKVM: without KVM, auto launches TCG only; forced tcg never tries KVM.
func TestBootNoKVM(t *testing.T) {
	isolateKVMMemory(t)
	l := &fakeLauncher{t: t, mayKVM: false}
	for _, a := range []Accel{AccelAuto, AccelTCG} {
		l.launched = nil
		if v, err := Boot[*fakeVM](t.Context(), l, Config{}, a, BootOptions{}); err != nil || v.Accel() != AccelTCG || len(l.launched) != 1 {
			t.Errorf("%s: %v, launched %v", a, err, l.launched)
		}
	}
	if _, err := Boot[*fakeVM](t.Context(), l, Config{}, "hvf", BootOptions{}); err == nil {
		t.Error("an unknown acceleration was accepted")
	}
	if _, err := os.Stat(kvmMarker()); err == nil {
		t.Error("a marker was written although KVM never failed")
	}
}
