package smoke

import (
	"context"
	"fmt"
	"strings"

	"github.com/imagemode/imagemode/ci/bootc"
	"github.com/imagemode/imagemode/ci/guest"
)

// SSH is how probes log in to a guest (disk mode: the user and per-run key config.toml installed).
type SSH struct {
	User       string
	Key        guest.Key
	Transcript *guest.Transcript
	// Sudo prefixes privileged commands (bootc status needs root).
	Sudo bool
}

func (s SSH) run(ctx context.Context, t Target, cmd string) (string, error) {
	c, err := guest.Dial(ctx, t.Addr(22), s.User, s.Key, s.Transcript)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if s.Sudo {
		cmd = "sudo -n " + cmd
	}
	return c.Run(ctx, cmd)
}

// BootcBooted passes when `bootc status --json` shows the tested digest booted.
type BootcBooted struct {
	SSH
	Digest string
}

// Name implements Probe.
func (BootcBooted) Name() string { return "bootc booted" }

// GuestPorts implements Probe.
func (BootcBooted) GuestPorts() []int { return []int{22} }

// Check implements Probe.
func (b BootcBooted) Check(ctx context.Context, t Target) (string, error) {
	out, err := b.run(ctx, t, "bootc status --json")
	if err != nil {
		return "", err
	}
	st, err := bootc.Parse([]byte(out))
	if err != nil {
		return "", err
	}
	d, ref, err := st.Booted()
	if err != nil {
		return "", err
	}
	if d != b.Digest {
		return "", fmt.Errorf("bootc booted %s (%s), not the tested %s", d, ref, b.Digest)
	}
	return fmt.Sprintf("booted %s following %s", d, ref), nil
}

// NoFailedUnits passes when `systemctl --failed` lists nothing.
type NoFailedUnits struct{ SSH }

// Name implements Probe.
func (NoFailedUnits) Name() string { return "no failed units" }

// GuestPorts implements Probe.
func (NoFailedUnits) GuestPorts() []int { return []int{22} }

// Check implements Probe.
func (n NoFailedUnits) Check(ctx context.Context, t Target) (string, error) {
	// Wait for boot to settle: units still starting are not failures yet.
	state, err := n.run(ctx, t, "systemctl is-system-running --wait || true")
	if err != nil {
		return "", err
	}
	out, err := n.run(ctx, t, "systemctl --failed --no-legend --plain")
	if err != nil {
		return "", err
	}
	if units := strings.TrimSpace(out); units != "" {
		return "", fmt.Errorf("failed units: %s", strings.Join(strings.Fields(units), " "))
	}
	return "system " + strings.TrimSpace(state) + ", no failed units", nil
}
