package guest

import (
	"errors"
	"strings"
	"testing"

	"github.com/imagemode/imagemode/ci/guest/guesttest"
)

func TestRunAndTranscript(t *testing.T) {
	key, err := NewKey("imagemode-test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key.Authorized, "ssh-ed25519 ") || !strings.HasSuffix(key.Authorized, " imagemode-test") {
		t.Errorf("authorized line = %q", key.Authorized)
	}
	srv := guesttest.Start(t, key.Signer.PublicKey(), func(cmd string) (string, string, int) {
		switch cmd {
		case "echo hi":
			return "hi\n", "", 0
		case "false":
			return "", "nope\n", 3
		}
		return "", "unknown command\n", 127
	})
	var tr Transcript
	c, err := Dial(t.Context(), srv.Addr, "root", key, &tr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.HostKey == "" {
		t.Error("host key fingerprint not recorded")
	}
	out, err := c.Run(t.Context(), "echo hi")
	if err != nil || out != "hi\n" {
		t.Fatalf("Run = %q, %v", out, err)
	}
	_, err = c.Run(t.Context(), "false")
	var xe *ExitError
	if !errors.As(err, &xe) || xe.Status != 3 || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("exit error = %v", err)
	}
	es := tr.Entries()
	if len(es) != 2 || es[0].Command != "echo hi" || es[0].Stdout != "hi\n" || es[1].ExitStatus != 3 || es[1].Stderr != "nope\n" {
		t.Errorf("transcript = %+v", es)
	}

	other, err := NewKey("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(t.Context(), srv.Addr, "root", other, nil); err == nil {
		t.Error("an unauthorized key was accepted")
	}
}
