package smoke

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/vm"
)

type fakeGuest struct {
	mu      sync.Mutex
	serial  string
	started time.Time
	exited  chan struct{}
}

func newFake() *fakeGuest { return &fakeGuest{started: time.Now(), exited: make(chan struct{})} }

func (f *fakeGuest) Addr(p int) string { return "127.0.0.1:1" }
func (f *fakeGuest) Serial() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.serial
}
func (f *fakeGuest) write(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serial += s
}
func (f *fakeGuest) Started() time.Time      { return f.started }
func (f *fakeGuest) Exited() <-chan struct{} { return f.exited }
func (f *fakeGuest) ExitError() error {
	select {
	case <-f.exited:
		return errors.New("QEMU exited")
	default:
		return nil
	}
}

// afterProbe passes once after is reached.
type afterProbe struct {
	name  string
	after time.Duration
	start time.Time
}

func (a afterProbe) Name() string      { return a.name }
func (a afterProbe) GuestPorts() []int { return nil }
func (a afterProbe) Check(context.Context, Target) (string, error) {
	if time.Since(a.start) >= a.after {
		return "ok", nil
	}
	return "", errors.New("not yet")
}

func TestRunPassesAndTimesEachProbe(t *testing.T) {
	g := newFake()
	g.write("[  OK  ] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\n")
	probes := []Probe{MultiUser{}, afterProbe{"slow", 300 * time.Millisecond, g.started}}
	res, fatal := Run(t.Context(), g, probes, RunOptions{Deadline: 5 * time.Second, Interval: 50 * time.Millisecond})
	if fatal != nil {
		t.Fatal(fatal)
	}
	if !res[0].OK || res[0].Detail != "Reached target multi-user.target - Multi-User System" {
		t.Errorf("multi-user = %+v", res[0])
	}
	if !res[1].OK || res[1].SinceBootMS < 300 || res[1].Attempts < 2 {
		t.Errorf("slow = %+v", res[1])
	}
}

func TestRunDeadlineAndFatal(t *testing.T) {
	g := newFake()
	start := time.Now()
	res, fatal := Run(t.Context(), g, []Probe{MultiUser{}}, RunOptions{Deadline: 400 * time.Millisecond, Interval: 50 * time.Millisecond})
	if fatal != nil || res[0].OK || !strings.Contains(res[0].Detail, "multi-user.target") {
		t.Errorf("deadline: %+v %v", res, fatal)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the deadline was not kept: %s", took)
	}

	g = newFake()
	go func() {
		time.Sleep(100 * time.Millisecond)
		g.write("Kernel panic - not syncing: VFS: Unable to mount root fs\n")
	}()
	start = time.Now()
	_, fatal = Run(t.Context(), g, []Probe{MultiUser{}}, RunOptions{Deadline: 30 * time.Second, Interval: 50 * time.Millisecond})
	if fatal == nil || !strings.Contains(fatal.Error(), "Kernel panic") || time.Since(start) > 5*time.Second {
		t.Errorf("panic not detected early: %v after %s", fatal, time.Since(start))
	}

	g = newFake()
	go func() {
		time.Sleep(100 * time.Millisecond)
		g.write("end Kernel panic - not syncing: Attempted to kill init!\n")
		close(g.exited)
	}()
	_, fatal = Run(t.Context(), g, []Probe{MultiUser{}}, RunOptions{Deadline: 30 * time.Second, Interval: 50 * time.Millisecond})
	if fatal == nil || !strings.Contains(fatal.Error(), "Kernel panic") || !strings.Contains(fatal.Error(), "QEMU exited") {
		t.Errorf("exit after a panic: %v", fatal)
	}
}

func TestProbesFromLayer(t *testing.T) {
	ps, err := Probes(layers.Smoke{HTTP: []layers.HTTPProbe{{Path: "/", Expect: "x"}}, MariaDB: true})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name())
	}
	if strings.Join(names, ",") != "multi-user,http /,mariadb" {
		t.Errorf("probes = %v", names)
	}
	m := ps[2].(MariaDB)
	if m.User != "smoke" || len(m.Password) != 24 || m.Credential() != "smoke:"+m.Password {
		t.Errorf("mariadb probe = %+v", m)
	}
}

func TestAttachAndServices(t *testing.T) {
	m, err := NewMariaDB()
	if err != nil {
		t.Fatal(err)
	}
	probes := []Probe{MultiUser{}, HTTP{Path: "/"}, HTTP{Path: "/other"}, m}
	cfg := vm.Config{Forwards: []vm.Forward{{Guest: 22}}}
	added := Attach(&cfg, probes, "0.0.0.0", true)
	if fmt.Sprint(added) != "[80 3306]" {
		t.Errorf("added %v", added)
	}
	if len(cfg.Forwards) != 3 || cfg.Forwards[1] != (vm.Forward{Guest: 80, Host: 80, Bind: "0.0.0.0"}) || cfg.Forwards[2].Guest != 3306 {
		t.Errorf("forwards %+v", cfg.Forwards)
	}
	if cfg.Credentials[CredentialName] != m.Credential() {
		t.Errorf("credentials %v", cfg.Credentials)
	}
	cfg2 := vm.Config{}
	Attach(&cfg2, probes, "", false)
	if cfg2.Forwards[0] != (vm.Forward{Guest: 80}) {
		t.Errorf("host forwards %+v", cfg2.Forwards)
	}
	if s := Services(probes); len(s) != 3 || s[0].Name() != "http /" {
		t.Errorf("services %v", s)
	}
}

// statedGuest is a guest whose console reader can say how reading went (a QEMU in an engine service).
type statedGuest struct {
	*fakeGuest
}

func (statedGuest) ConsoleState() string { return "12 reads, 0 bytes" }

// TestMultiUserNamesAnEmptyConsole: a console that stays empty is reported as such, with its reader's state, so a
// failed verdict tells a broken console from a guest that never reached multi-user.
func TestMultiUserNamesAnEmptyConsole(t *testing.T) {
	g := statedGuest{newFake()}
	_, err := MultiUser{}.Check(t.Context(), g)
	if err == nil || !strings.Contains(err.Error(), "stayed empty (12 reads, 0 bytes)") {
		t.Errorf("empty console: %v", err)
	}
	g.write("[  OK  ] Reached target basic.target\n")
	_, err = MultiUser{}.Check(t.Context(), g)
	if err == nil || !strings.Contains(err.Error(), "does not show multi-user.target reached") {
		t.Errorf("console without the target: %v", err)
	}
	g.write("[  OK  ] Reached target multi-user.target - Multi-User System\n")
	if d, err := (MultiUser{}).Check(t.Context(), g); err != nil || !strings.Contains(d, "multi-user.target") {
		t.Errorf("console with the target: %q, %v", d, err)
	}
}

// wrongProbe answers, but wrongly, from the start.
type wrongProbe struct{}

func (wrongProbe) Name() string      { return "http /" }
func (wrongProbe) GuestPorts() []int { return nil }
func (wrongProbe) Check(context.Context, Target) (string, error) {
	return "", fmt.Errorf("GET /: status 500, want 200: %w", ErrWrongAnswer)
}

// A wrong answer that persists after multi-user fails the run then, not at the deadline; one before multi-user
// (the guest still starting) does not count.
func TestWrongAnswerFailsAfterGrace(t *testing.T) {
	g := newFake()
	go func() {
		time.Sleep(300 * time.Millisecond)
		g.write("[  OK  ] Reached target multi-user.target - Multi-User System.\n")
	}()
	start := time.Now()
	res, fatal := Run(t.Context(), g, []Probe{MultiUser{}, wrongProbe{}},
		RunOptions{Deadline: 20 * time.Second, Interval: 20 * time.Millisecond, WrongAnswerGrace: 500 * time.Millisecond})
	took := time.Since(start)
	if fatal == nil || !strings.Contains(fatal.Error(), "status 500") || !strings.Contains(fatal.Error(), "after the guest reached multi-user") {
		t.Fatalf("fatal = %v", fatal)
	}
	if took < 800*time.Millisecond || took > 5*time.Second {
		t.Errorf("the run took %s: want multi-user (0.3 s) + grace (0.5 s), far less than the 20 s deadline", took)
	}
	if !res[0].OK || res[1].OK {
		t.Errorf("results %+v", res)
	}
	// Not an answer at all (connection refused) waits for the deadline as before.
	g2 := newFake()
	g2.write("[  OK  ] Reached target multi-user.target - Multi-User System.\n")
	_, fatal = Run(t.Context(), g2, []Probe{MultiUser{}, afterProbe{"never", time.Hour, g2.started}},
		RunOptions{Deadline: 700 * time.Millisecond, Interval: 20 * time.Millisecond, WrongAnswerGrace: 100 * time.Millisecond})
	if fatal != nil {
		t.Errorf("a probe that never answers ended the run early: %v", fatal)
	}
}
