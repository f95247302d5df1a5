package smoke

import (
	"net"
	"strings"
	"testing"

	"github.com/imagemode/imagemode/ci/guest"
	"github.com/imagemode/imagemode/ci/guest/guesttest"
)

type sshTarget struct{ addr string }

func (s sshTarget) Addr(p int) string {
	_, port, _ := net.SplitHostPort(s.addr)
	return net.JoinHostPort("127.0.0.1", port)
}
func (s sshTarget) Serial() string { return "" }

func TestSSHProbes(t *testing.T) {
	key, err := guest.NewKey("")
	if err != nil {
		t.Fatal(err)
	}
	booted := "sha256:1111"
	failed := ""
	target := "activating"
	srv := guesttest.Start(t, key.Signer.PublicKey(), func(cmd string) (string, string, int) {
		cmd = strings.TrimPrefix(cmd, "sudo -n ")
		switch {
		case strings.HasSuffix(cmd, "bootc status --json"):
			return `{"kind":"BootcHost","status":{"booted":{"image":{"image":{"image":"r/x:t","transport":"registry"},"imageDigest":"` + booted + `"}}}}`, "", 0
		case strings.HasPrefix(cmd, "systemctl is-system-running"):
			return "running\n", "", 0
		case cmd == "systemctl --failed --no-legend --plain":
			return failed, "", 0
		case cmd == "systemctl is-active multi-user.target || true":
			return target + "\n", "", 0
		}
		return "", "?", 127
	})
	tr := &guest.Transcript{}
	s := SSH{User: "bootc-user", Key: key, Transcript: tr, Sudo: true}
	tg := sshTarget{srv.Addr}
	if d, err := (BootcBooted{SSH: s, Digest: "sha256:1111"}).Check(t.Context(), tg); err != nil || !strings.Contains(d, "r/x:t") {
		t.Errorf("booted probe: %q %v", d, err)
	}
	if _, err := (BootcBooted{SSH: s, Digest: "sha256:2222"}).Check(t.Context(), tg); err == nil || !strings.Contains(err.Error(), "not the tested sha256:2222") {
		t.Errorf("wrong digest: %v", err)
	}
	if _, err := (NoFailedUnits{s}).Check(t.Context(), tg); err != nil {
		t.Errorf("no failed units: %v", err)
	}
	failed = "httpd.service loaded failed failed The Apache HTTP Server\n"
	if _, err := (NoFailedUnits{s}).Check(t.Context(), tg); err == nil || !strings.Contains(err.Error(), "httpd.service") {
		t.Errorf("failed unit: %v", err)
	}
	// Multi-user: a quiet console is judged over SSH, only with SSH set.
	mu := WithSSH([]Probe{MultiUser{}}, s)[0]
	if _, err := (MultiUser{}).Check(t.Context(), tg); err == nil || !strings.Contains(err.Error(), "serial console") {
		t.Errorf("multi-user without SSH: %v", err)
	}
	if _, err := mu.Check(t.Context(), tg); err == nil || !strings.Contains(err.Error(), `"activating"`) {
		t.Errorf("multi-user while activating: %v", err)
	}
	target = "active"
	if d, err := mu.Check(t.Context(), tg); err != nil || !strings.Contains(d, "over SSH") {
		t.Errorf("multi-user active: %q %v", d, err)
	}
	if got := srv.Commands()[0]; got != "sudo -n bootc status --json" {
		t.Errorf("command = %q", got)
	}
	if len(tr.Entries()) == 0 {
		t.Error("no transcript")
	}
}
