package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWithoutSecretMountsProduct strips the entitlement mounts of every product and stand-in Containerfile, as a
// CentOS build without entitlement does, and keeps what was passed.
func TestWithoutSecretMountsProduct(t *testing.T) {
	files, err := filepath.Glob("../../containerfiles/*/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	standin, err := filepath.Glob("../../tests/standin/containerfiles/*/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, standin...)
	if len(files) < 8 {
		t.Fatalf("found only %v", files)
	}
	passed := map[string]bool{"bootc-user-password-hash": true}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		before, err := SecretMounts(src)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out, removed, err := WithoutSecretMounts(src, func(id string) bool { return passed[id] })
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		after, err := SecretMounts(out)
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for _, m := range before {
			if passed[m.ID] {
				kept = append(kept, m.ID)
			}
		}
		if len(after) != len(kept) || len(removed)+len(kept) != len(before) {
			t.Errorf("%s: %d mounts before, removed %v, %d after; want the %d passed ones", f, len(before), removed, len(after), len(kept))
		}
		for _, m := range after {
			if !passed[m.ID] {
				t.Errorf("%s: mount of %q left", f, m.ID)
			}
		}
		if strings.Contains(filepath.Dir(f), "soe") && len(removed) != 3 {
			t.Errorf("%s: removed %v, want the 3 entitlement secrets", f, removed)
		}
		// Nothing else changes: the commands are the same text.
		if strings.Count(string(out), "dnf") != strings.Count(string(src), "dnf") || strings.Count(string(out), "RUN") != strings.Count(string(src), "RUN") {
			t.Errorf("%s: instructions changed:\n%s", f, out)
		}
	}
}

func TestWithoutSecretMountsCases(t *testing.T) {
	none := func(string) bool { return false }
	cases := []struct{ in, want string }{
		{"FROM x\nRUN --mount=type=secret,id=a,target=/a cat /a\n", "FROM x\nRUN cat /a\n"},
		{"FROM x\nRUN --mount=type=secret,target=/run/secrets/tok cat /run/secrets/tok\n", "FROM x\nRUN cat /run/secrets/tok\n"},
		{"FROM x\nRUN --mount=type=secret,id=a \\\n    --mount=type=cache,target=/c \\\n    --mount=type=secret,id=b \\\n    make\n",
			"FROM x\nRUN \\\n    --mount=type=cache,target=/c \\\n    make\n"},
		{"FROM x\nRUN echo --mount=type=secret,id=a\n", "FROM x\nRUN echo --mount=type=secret,id=a\n"},
	}
	for _, c := range cases {
		out, _, err := WithoutSecretMounts([]byte(c.in), none)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if string(out) != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.in, out, c.want)
		}
	}
	if _, _, err := WithoutSecretMounts([]byte("FROM x\nRUN --mount=\"type=secret,id=a\" cat /a\n"), none); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a quoted flag: %v; want an error naming line 2", err)
	}
	if _, _, err := WithoutSecretMounts([]byte("FROM x\nRUN --mount=type=secret,id=\"a cat\n"), none); err == nil {
		t.Error("a broken flag was accepted")
	}
}
