package guest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
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
		if strings.Contains(cmd, "cat > /etc/ostree/auth.json") {
			return "", "", 0
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

	if err := c.WriteFile(t.Context(), "/etc/ostree/auth.json", []byte(`{"auths":{"r":{"auth":"c2VjcmV0"}}}`), 0o600, true); err != nil {
		t.Fatal(err)
	}
	for _, e := range tr.Entries() {
		if strings.Contains(e.Command+e.Stdout+e.Stderr, "c2VjcmV0") {
			t.Errorf("the transcript holds the file's content: %+v", e)
		}
	}
	if got := srv.Commands(); !strings.HasPrefix(got[len(got)-1], "sudo -n sh -c 'umask 077") || !strings.Contains(got[len(got)-1], "chmod 0600 /etc/ostree/auth.json") {
		t.Errorf("write command = %q", got[len(got)-1])
	}
	if got := srv.Stdin(); got != `{"auths":{"r":{"auth":"c2VjcmV0"}}}` {
		t.Errorf("stdin = %q", got)
	}

	other, err := NewKey("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(t.Context(), srv.Addr, "root", other, nil); err == nil {
		t.Error("an unauthorized key was accepted")
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	key, err := NewKey("imagemode-smoke")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(file, key.PrivatePEM, 0o600); err != nil {
		t.Fatal(err)
	}
	back, err := ReadKey(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key.Authorized, back.Authorized) || !bytes.Equal(back.Signer.PublicKey().Marshal(), key.Signer.PublicKey().Marshal()) {
		t.Errorf("read back %q, made %q", back.Authorized, key.Authorized)
	}
	if err := os.WriteFile(file, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKey(file); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("a bad key file: %v", err)
	}
}
