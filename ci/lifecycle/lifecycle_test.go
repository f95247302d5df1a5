package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/guest"
	"github.com/imagemode/imagemode/ci/guest/guesttest"
	"github.com/imagemode/imagemode/ci/smoke"
)

const (
	original  = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
	candidate = "sha256:0000000000000000000000000000000000000000000000000000000000000002"
	other     = "sha256:0000000000000000000000000000000000000000000000000000000000000009"
	repo      = "registry.example.com/im/homepage"
)

// fakeHost simulates a bootc host behind SSH: deployments, reboots (new boot id), /etc files.
type fakeHost struct {
	mu             sync.Mutex
	bootID         int
	booted, staged string
	rollback       string
	follows        string
	channel        string // digest the channel tag points at
	etc            map[string]string
	refused        map[string]bool
	neverComesBack bool
	bootsWrong     bool
	rebootPending  bool
	rebootAt       time.Time
	rollbackQueued bool
}

var echoRE = regexp.MustCompile(`^sh -c 'echo (\S+) > (\S+)'$`)

func (h *fakeHost) tick() {
	if h.rebootPending && time.Now().After(h.rebootAt) && !h.neverComesBack {
		h.rebootPending = false
		h.bootID++
		switch {
		case h.rollbackQueued:
			h.booted, h.rollback = h.rollback, h.booted
			h.rollbackQueued = false
		case h.staged != "":
			h.rollback, h.booted = h.booted, h.staged
		}
		h.staged = ""
		if h.bootsWrong {
			h.booted = other
		}
	}
}

func (h *fakeHost) handle(cmd string) (string, string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tick()
	cmd = strings.TrimPrefix(cmd, "sudo -n ")
	switch {
	case cmd == "cat /proc/sys/kernel/random/boot_id":
		return fmt.Sprintf("boot-%d\n", h.bootID), "", 0
	case cmd == "bootc status --json":
		staged := "null"
		if h.staged != "" {
			staged = fmt.Sprintf(`{"image":{"image":{"image":%q,"transport":"registry"},"imageDigest":%q}}`, h.follows, h.staged)
		}
		return fmt.Sprintf(`{"apiVersion":"org.containers.bootc/v1","kind":"BootcHost","status":{"staged":%s,"booted":{"image":{"image":{"image":%q,"transport":"registry"},"imageDigest":%q}},"rollback":{"image":{"image":{"image":%q,"transport":"registry"},"imageDigest":%q}}}}`,
			staged, h.follows, h.booted, h.follows, h.rollback), "", 0
	case strings.HasPrefix(cmd, "bootc switch "):
		ref := strings.TrimPrefix(cmd, "bootc switch ")
		if h.refused[ref] {
			return "", "error: A signature was required, but no signature exists\n", 1
		}
		_, d, _ := strings.Cut(ref, "@")
		h.staged = d
		return "Queued for next boot\n", "", 0
	case cmd == "bootc rollback":
		h.rollbackQueued = true
		return "Next boot: rollback deployment\n", "", 0
	case cmd == "bootc upgrade":
		if h.channel == h.booted {
			return "No changes in: " + h.follows + "\n", "", 0
		}
		h.staged = h.channel
		return "Queued for next boot\n", "", 0
	case cmd == "systemctl reboot":
		h.rebootPending, h.rebootAt = true, time.Now().Add(200*time.Millisecond)
		return "", "", 0
	case strings.HasPrefix(cmd, "cat /etc/"):
		p := strings.TrimPrefix(cmd, "cat ")
		if v, ok := h.etc[p]; ok {
			return v + "\n", "", 0
		}
		return "", "cat: no such file\n", 1
	}
	if strings.Contains(cmd, "cat > /etc/ostree/auth.json") {
		return "", "", 0
	}
	if m := echoRE.FindStringSubmatch(cmd); m != nil {
		h.etc[m[2]] = m[1]
		return "", "", 0
	}
	return "", "unknown command: " + cmd + "\n", 127
}

type fakeMachine struct{ addr string }

func (m fakeMachine) Addr(int) string { return m.addr }
func (m fakeMachine) Serial() string  { return "console line 1\nconsole line 2\n" }

// bootedProbe fails when the host boots a given digest.
type bootedProbe struct {
	h    *fakeHost
	fail string
}

func (b bootedProbe) Name() string      { return "page" }
func (b bootedProbe) GuestPorts() []int { return []int{80} }
func (b bootedProbe) Check(context.Context, smoke.Target) (string, error) {
	b.h.mu.Lock()
	defer b.h.mu.Unlock()
	if b.fail != "" && b.h.booted == b.fail {
		return "", errors.New("GET /: connection refused")
	}
	return "GET /: 200", nil
}

func setup(t *testing.T, h *fakeHost) (Config, *guesttest.Server) {
	t.Helper()
	key, err := guest.NewKey("")
	if err != nil {
		t.Fatal(err)
	}
	srv := guesttest.Start(t, key.Signer.PublicKey(), h.handle)
	return Config{
		Machine: fakeMachine{srv.Addr}, User: "bootc-user", Key: key, Sudo: true,
		Original: original, Candidate: repo + "@" + candidate, Channel: repo + ":test",
		MoveChannel: func(ctx context.Context, d string) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.channel = d
			return nil
		},
		Probes:       []smoke.Probe{bootedProbe{h: h}},
		Refused:      []string{repo + "@" + other},
		StepDeadline: 5 * time.Second,
		RegistryAuth: []byte(`{"auths":{"registry.example.com":{"auth":"cm9ib3Q6c2VjcmV0"}}}`),
	}, srv
}

func newHost() *fakeHost {
	return &fakeHost{booted: original, follows: repo + ":test", channel: original, etc: map[string]string{},
		refused: map[string]bool{repo + "@" + other: true}}
}

func TestLifecyclePasses(t *testing.T) {
	h := newHost()
	cfg, srv := setup(t, h)
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != smoke.Pass {
		t.Fatalf("verdict %s: %s", rep.Verdict, rep.Reason)
	}
	var names []string
	for _, s := range rep.Steps {
		names = append(names, s.Name)
	}
	want := "start,policy refuses unsigned images,switch to the candidate,rollback,move the channel to the candidate,upgrade along the channel"
	if strings.Join(names, ",") != want {
		t.Errorf("steps = %v", names)
	}
	boots := map[string]string{}
	for _, s := range rep.Steps {
		boots[s.Name] = s.Booted
	}
	if boots["switch to the candidate"] != candidate || boots["rollback"] != original || boots["upgrade along the channel"] != candidate {
		t.Errorf("booted digests: %v", boots)
	}
	if rep.Steps[2].BootID == rep.Steps[0].BootID || rep.Steps[3].BootID == rep.Steps[2].BootID {
		t.Errorf("boot ids did not change: %+v", rep.Steps)
	}
	cmds := strings.Join(srv.Commands(), "\n")
	for _, c := range []string{"sudo -n bootc switch " + repo + "@" + candidate, "sudo -n bootc rollback", "sudo -n bootc upgrade", "sudo -n systemctl reboot"} {
		if !strings.Contains(cmds, c) {
			t.Errorf("the VM never ran %q", c)
		}
	}
	if len(rep.Transcript) < 10 || rep.Transcript[0].Command == "" {
		t.Errorf("transcript has %d entries", len(rep.Transcript))
	}
	if !strings.Contains(cmds, "cat > /etc/ostree/auth.json") {
		t.Error("the registry credentials were not written to /etc/ostree/auth.json")
	}
	for _, e := range rep.Transcript {
		if strings.Contains(e.Command+e.Stdout+e.Stderr, "cm9ib3Q6c2VjcmV0") {
			t.Errorf("the transcript holds the registry credentials: %q", e.Command)
		}
	}
}

func TestLifecycleFailures(t *testing.T) {
	cases := []struct {
		name   string
		mod    func(h *fakeHost, cfg *Config)
		reason string
	}{
		{"reboot never comes back", func(h *fakeHost, cfg *Config) { h.neverComesBack = true }, "switch to the candidate: the VM did not come back from the reboot"},
		{"booted digest wrong", func(h *fakeHost, cfg *Config) { h.bootsWrong = true }, "switch to the candidate: booted " + other},
		{"probe fails on the original", func(h *fakeHost, cfg *Config) {
			cfg.Probes = []smoke.Probe{bootedProbe{h: h, fail: original}}
		}, "start: probe page failed"},
		{"unsigned switch accepted", func(h *fakeHost, cfg *Config) { h.refused = map[string]bool{} }, "policy refuses unsigned images: bootc switch " + repo + "@" + other + " was accepted"},
		{"/etc change lost", func(h *fakeHost, cfg *Config) {
			cfg.Persist = []Persistence{forgetful{h}}
		}, "switch to the candidate: forget /etc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost()
			cfg, _ := setup(t, h)
			tc.mod(h, &cfg)
			start := time.Now()
			rep, err := Run(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Verdict != smoke.Fail || !strings.Contains(rep.Reason, tc.reason) {
				t.Fatalf("verdict %s, reason %q, want it to contain %q", rep.Verdict, rep.Reason, tc.reason)
			}
			if !strings.Contains(rep.SerialTail, "console line 2") {
				t.Errorf("no serial tail in the report")
			}
			if time.Since(start) > 20*time.Second {
				t.Errorf("took %s: the step deadline was not kept", time.Since(start))
			}
		})
	}
}

// The probe-after-rollback failure above fails already at start, since the original serves no page; this case
// makes only the rollback's boot fail.
func TestLifecycleProbeFailsAfterRollback(t *testing.T) {
	h := newHost()
	cfg, _ := setup(t, h)
	p := &rollbackBreaks{h: h}
	cfg.Probes = []smoke.Probe{p}
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != smoke.Fail || !strings.HasPrefix(rep.Reason, "rollback: probe page failed") {
		t.Fatalf("verdict %s: %s", rep.Verdict, rep.Reason)
	}
}

type rollbackBreaks struct{ h *fakeHost }

func (r *rollbackBreaks) Name() string      { return "page" }
func (r *rollbackBreaks) GuestPorts() []int { return []int{80} }
func (r *rollbackBreaks) Check(context.Context, smoke.Target) (string, error) {
	r.h.mu.Lock()
	defer r.h.mu.Unlock()
	if r.h.booted == original && r.h.bootID >= 2 {
		return "", errors.New("GET /: 503")
	}
	return "ok", nil
}

// forgetful loses its state at the first reboot.
type forgetful struct{ h *fakeHost }

func (f forgetful) Name() string                          { return "forget /etc" }
func (f forgetful) Write(context.Context, *Session) error { return nil }
func (f forgetful) Check(ctx context.Context, _ *Session) error {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	if f.h.bootID > 0 {
		return errors.New("gone after the reboot")
	}
	return nil
}
