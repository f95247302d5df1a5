// Package lifecycle proves the bootc life cycle of a candidate on a running VM, over SSH, the way an operator
// lives it: bootc switch to the candidate and reboot, bootc rollback and reboot, bootc upgrade along a channel tag
// and reboot — checking after every boot which digest is booted, that the layer's probes pass, and that local state
// (/etc changes, database rows) survives; and that the host's signature policy refuses unsigned images. Reboots
// are detected by the boot id; every step has a deadline; every command and its output goes to the transcript.
package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/imagemode/imagemode/ci/bootc"
	"github.com/imagemode/imagemode/ci/guest"
	"github.com/imagemode/imagemode/ci/smoke"
)

// Machine is the VM under test.
type Machine interface {
	// Addr returns the host:port forwarded to guest port p (22 for SSH).
	Addr(p int) string
	// Serial returns the serial console so far (for failure reports).
	Serial() string
}

// Persistence is local state written before a transition and checked after it.
type Persistence interface {
	Name() string
	Write(ctx context.Context, s *Session) error
	Check(ctx context.Context, s *Session) error
}

// Config is one life-cycle test.
type Config struct {
	Machine Machine
	// User and Key log in; Sudo prefixes bootc and systemctl (not needed as root).
	User string
	Key  guest.Key
	Sudo bool
	// Original is the digest the VM runs at the start; Candidate the image to switch to (repository@sha256:...).
	Original  string
	Candidate string
	// Channel is the tag the VM follows (its bootc image reference) for the upgrade step; MoveChannel points it at a
	// digest in the registry. Without them the upgrade step is skipped.
	Channel     string
	MoveChannel func(ctx context.Context, digest string) error
	// Probes are the layer's smoke probes, run after every boot.
	Probes []smoke.Probe
	// Persist are checked after every transition (an /etc change is always among them).
	Persist []Persistence
	// Refused are images the host's signature policy must refuse to switch to (unsigned, other key).
	Refused []string
	// StepDeadline bounds each step: a reboot plus the probes (default 5 min).
	StepDeadline time.Duration
	// SkipRollbackUpgrade runs only the switch (the profile upgrade of a database keeps the new profile).
	SkipRollbackUpgrade bool
	// RegistryAuth, when set, is a containers auth.json written to /etc/ostree/auth.json in the VM (credentials
	// for private repositories go there, never into an image); the transcript does not record it.
	RegistryAuth []byte
}

// Step is one transition's outcome.
type Step struct {
	Name       string              `json:"name"`
	OK         bool                `json:"ok"`
	Detail     string              `json:"detail,omitempty"`
	BootID     string              `json:"bootId,omitempty"`
	Booted     string              `json:"booted,omitempty"`
	Probes     []smoke.ProbeResult `json:"probes,omitempty"`
	DurationMS int64               `json:"durationMs"`
}

// Report is the life-cycle verdict with the transcript of every command.
type Report struct {
	Verdict    string        `json:"verdict"`
	Reason     string        `json:"reason,omitempty"`
	Original   string        `json:"original"`
	Candidate  string        `json:"candidate"`
	Steps      []Step        `json:"steps"`
	Transcript []guest.Entry `json:"transcript"`
	SerialTail string        `json:"serialTail,omitempty"`
	DurationMS int64         `json:"durationMs"`
}

// Session is the SSH side of a test, shared with Persistence checks.
type Session struct {
	cfg Config
	tr  *guest.Transcript
	c   *guest.Client
}

func (s *Session) connect(ctx context.Context) error {
	if s.c != nil {
		return nil
	}
	c, err := guest.Retry(ctx, s.cfg.Machine.Addr(22), s.cfg.User, s.cfg.Key, s.tr, time.Second)
	if err != nil {
		return fmt.Errorf("ssh to the VM: %w", err)
	}
	s.c = c
	return nil
}

func (s *Session) drop() {
	if s.c != nil {
		s.c.Close()
		s.c = nil
	}
}

// Run runs cmd in the guest (privileged commands get sudo when configured).
func (s *Session) Run(ctx context.Context, cmd string, privileged bool) (string, error) {
	if err := s.connect(ctx); err != nil {
		return "", err
	}
	if privileged && s.cfg.Sudo {
		cmd = "sudo -n " + cmd
	}
	out, err := s.c.Run(ctx, cmd)
	var xe *guest.ExitError
	if err != nil && !errors.As(err, &xe) {
		s.drop() // the connection is gone; the next command reconnects
	}
	return out, err
}

// WriteFile writes a file in the guest without recording its content.
func (s *Session) WriteFile(ctx context.Context, path string, content []byte, mode os.FileMode) error {
	if err := s.connect(ctx); err != nil {
		return err
	}
	return s.c.WriteFile(ctx, path, content, mode, s.cfg.Sudo)
}

// BootID reads /proc/sys/kernel/random/boot_id.
func (s *Session) BootID(ctx context.Context) (string, error) {
	out, err := s.Run(ctx, "cat /proc/sys/kernel/random/boot_id", false)
	return strings.TrimSpace(out), err
}

// Status reads bootc status --json.
func (s *Session) Status(ctx context.Context) (*bootc.Status, error) {
	out, err := s.Run(ctx, "bootc status --json", true)
	if err != nil {
		return nil, err
	}
	return bootc.Parse([]byte(out))
}

// Reboot asks the guest to reboot and waits for it to come back with a new boot id.
func (s *Session) Reboot(ctx context.Context, before string) (string, error) {
	// The connection drops while the command runs: that is the expected outcome, not an error.
	if _, err := s.Run(ctx, "systemctl reboot", true); err != nil {
		var xe *guest.ExitError
		if errors.As(err, &xe) {
			return "", fmt.Errorf("systemctl reboot: %w", err)
		}
	}
	s.drop()
	for {
		if ctx.Err() != nil {
			return "", fmt.Errorf("the VM did not come back from the reboot: %w", ctx.Err())
		}
		id, err := s.BootID(ctx)
		if err == nil && id != "" && id != before {
			return id, nil
		}
		s.drop()
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// EtcChange writes a file under /etc and checks it survives transitions (bootc's 3-way /etc merge).
type EtcChange struct {
	Path  string
	token string
}

// Name implements Persistence.
func (e *EtcChange) Name() string { return "local change in " + e.Path }

// Write implements Persistence.
func (e *EtcChange) Write(ctx context.Context, s *Session) error {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	e.token = hex.EncodeToString(b)
	_, err := s.Run(ctx, fmt.Sprintf("sh -c 'echo imagemode-lifecycle=%s > %s'", e.token, e.Path), true)
	return err
}

// Check implements Persistence.
func (e *EtcChange) Check(ctx context.Context, s *Session) error {
	out, err := s.Run(ctx, "cat "+e.Path, false)
	if err != nil {
		return fmt.Errorf("%s is gone: %w", e.Path, err)
	}
	if !strings.Contains(out, e.token) {
		return fmt.Errorf("%s lost the local change (%q)", e.Path, strings.TrimSpace(out))
	}
	return nil
}

type failure struct {
	step string
	err  error
}

func (f *failure) Error() string { return f.step + ": " + f.err.Error() }

// Run performs the test. An error means it could not run at all; a failed transition is a Fail report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Machine == nil || cfg.Original == "" || cfg.Candidate == "" {
		return nil, errors.New("lifecycle: a machine, the original digest and the candidate are required")
	}
	if cfg.StepDeadline == 0 {
		cfg.StepDeadline = 5 * time.Minute
	}
	start := time.Now()
	_, candDigest, ok := strings.Cut(cfg.Candidate, "@")
	if !ok {
		return nil, fmt.Errorf("lifecycle: the candidate %q is not a digest reference", cfg.Candidate)
	}
	tr := &guest.Transcript{}
	s := &Session{cfg: cfg, tr: tr}
	defer s.drop()
	rep := &Report{Original: cfg.Original, Candidate: cfg.Candidate}
	etc := &EtcChange{Path: "/etc/imagemode-lifecycle.conf"}
	persist := append([]Persistence{etc}, cfg.Persist...)

	step := func(name string, f func(ctx context.Context, st *Step) error) error {
		ctx, cancel := context.WithTimeout(ctx, cfg.StepDeadline)
		defer cancel()
		st := Step{Name: name}
		t0 := time.Now()
		err := f(ctx, &st)
		st.DurationMS = time.Since(t0).Milliseconds()
		st.OK = err == nil
		if err != nil {
			st.Detail = err.Error()
		}
		rep.Steps = append(rep.Steps, st)
		if err != nil {
			return &failure{step: name, err: err}
		}
		return nil
	}
	expectBooted := func(ctx context.Context, st *Step, want string) error {
		status, err := s.Status(ctx)
		if err != nil {
			return err
		}
		d, ref, err := status.Booted()
		if err != nil {
			return err
		}
		st.Booted = d
		if d != want {
			return fmt.Errorf("booted %s (%s), want %s", d, ref, want)
		}
		return nil
	}
	services := func(ctx context.Context, st *Step) error {
		results, fatal := smoke.RunAfter(ctx, cfg.Machine, cfg.Probes, cfg.StepDeadline)
		st.Probes = results
		if fatal != nil {
			return fatal
		}
		for _, r := range results {
			if !r.OK {
				return fmt.Errorf("probe %s failed: %s", r.Name, r.Detail)
			}
		}
		return nil
	}
	probe := func(ctx context.Context, st *Step) error {
		if err := services(ctx, st); err != nil {
			return err
		}
		for _, p := range persist {
			if err := p.Check(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", p.Name(), err)
			}
		}
		return nil
	}
	transition := func(name, cmd, want string) error {
		return step(name, func(ctx context.Context, st *Step) error {
			before, err := s.BootID(ctx)
			if err != nil {
				return err
			}
			if cmd != "" {
				if _, err := s.Run(ctx, cmd, true); err != nil {
					return err
				}
			}
			id, err := s.Reboot(ctx, before)
			if err != nil {
				return err
			}
			st.BootID = id
			if err := expectBooted(ctx, st, want); err != nil {
				return err
			}
			return probe(ctx, st)
		})
	}

	err := step("start", func(ctx context.Context, st *Step) error {
		id, err := s.BootID(ctx)
		if err != nil {
			return err
		}
		st.BootID = id
		if err := expectBooted(ctx, st, cfg.Original); err != nil {
			return err
		}
		if len(cfg.RegistryAuth) > 0 {
			if err := s.WriteFile(ctx, "/etc/ostree/auth.json", cfg.RegistryAuth, 0o600); err != nil {
				return err
			}
		}
		// The services answer first (MariaDB may still be starting after boot), then the state is written.
		if err := services(ctx, st); err != nil {
			return err
		}
		for _, p := range persist {
			if err := p.Write(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", p.Name(), err)
			}
		}
		return probe(ctx, st)
	})
	if err == nil && len(cfg.Refused) > 0 {
		err = step("policy refuses unsigned images", func(ctx context.Context, st *Step) error {
			for _, ref := range cfg.Refused {
				out, err := s.Run(ctx, "bootc switch "+ref, true)
				var xe *guest.ExitError
				if err == nil {
					return fmt.Errorf("bootc switch %s was accepted: %s", ref, strings.TrimSpace(out))
				}
				if !errors.As(err, &xe) {
					return err
				}
			}
			status, err := s.Status(ctx)
			if err != nil {
				return err
			}
			if d := status.Status.Staged.Digest(); d != "" {
				return fmt.Errorf("a refused switch left %s staged", d)
			}
			st.Detail = fmt.Sprintf("%d image(s) refused", len(cfg.Refused))
			return nil
		})
	}
	if err == nil {
		err = transition("switch to the candidate", "bootc switch "+cfg.Candidate, candDigest)
	}
	if err == nil && !cfg.SkipRollbackUpgrade {
		err = transition("rollback", "bootc rollback", cfg.Original)
	}
	if err == nil && !cfg.SkipRollbackUpgrade && cfg.MoveChannel != nil {
		err = step("move the channel to the candidate", func(ctx context.Context, st *Step) error {
			st.Detail = cfg.Channel + " -> " + candDigest
			return cfg.MoveChannel(ctx, candDigest)
		})
		if err == nil {
			err = transition("upgrade along the channel", "bootc upgrade", candDigest)
		}
	}
	rep.Transcript = tr.Entries()
	rep.DurationMS = time.Since(start).Milliseconds()
	var f *failure
	switch {
	case err == nil:
		rep.Verdict = smoke.Pass
	case errors.As(err, &f):
		rep.Verdict, rep.Reason = smoke.Fail, f.Error()
		rep.SerialTail = tail(cfg.Machine.Serial(), smoke.SerialTailLines)
	default:
		return rep, err
	}
	return rep, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
