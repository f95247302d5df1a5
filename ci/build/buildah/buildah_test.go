package buildah

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/imagemode/imagemode/ci/build"
)

// fakeBuildah writes a script that records its arguments and the context it was given, writes the id/digest files
// buildah would, and fails when asked to.
func fakeBuildah(t *testing.T, fail string) (bin, logFile string) {
	t.Helper()
	dir := t.TempDir()
	logFile = filepath.Join(dir, "calls")
	script := `#!/bin/sh
echo "$@" >> ` + logFile + `
if [ -n "$FAKE_FAIL" ] && echo "$@" | grep -q -- "$FAKE_FAIL"; then echo "step failed: $FAKE_FAIL" >&2; exit 1; fi
prev=""
for a in "$@"; do
  case "$prev" in
    --iidfile) echo "sha256:1111" > "$a" ;;
    --digestfile) echo "sha256:` + strings.Repeat("d", 64) + `" > "$a" ;;
  esac
  prev="$a"
done
last=""
for a in "$@"; do last="$a"; done
if [ "$1" = "bud" ] || [ "$3" = "bud" ] || [ "$5" = "bud" ]; then (cd "$last" && find . -type f -o -type l | sort) >> ` + logFile + `.ctx; fi
echo "CONTAINERS_CONF=$CONTAINERS_CONF" >> ` + logFile + `.env
`
	bin = filepath.Join(dir, "buildah")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_FAIL", fail)
	return bin, logFile
}

func request() build.Request {
	return build.Request{
		Layer: "httpd", ContextDir: "httpd", Files: []string{"Containerfile", "html/index.html"},
		ExtraFiles:    map[string][]byte{"trust/policy.json": []byte("{}")},
		Containerfile: "Containerfile",
		BuildArgs:     map[string]string{"BASE_IMAGE": "127.0.0.1:5000/im/soe@sha256:abc", "EXTRA": "1"},
		Labels:        map[string]string{"io.imagemode.layer": "httpd", "org.opencontainers.image.revision": "abc"},
		Target:        "127.0.0.1:5000/im/httpd:build-r1-standin", SourceDateEpoch: 1700000000,
	}
}

var src = fstest.MapFS{
	"httpd/Containerfile":     {Data: []byte("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")},
	"httpd/html/index.html":   {Data: []byte("<p>")},
	"httpd/not-in-the-set.md": {Data: []byte("excluded")},
}

func TestBuildArguments(t *testing.T) {
	bin, logFile := fakeBuildah(t, "")
	secret := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(secret, []byte("CERT"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := New(src, WithBinary(bin), WithStorage("/s/root", "/s/run"), WithContainersConf("/etc/im.conf"),
		WithSecretFile("entitlement-cert", secret), WithSecretValue("bootc-user-password-hash", []byte("$6$x")))
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Build(t.Context(), request())
	if err != nil {
		t.Fatal(err)
	}
	wantDigest := "sha256:" + strings.Repeat("d", 64)
	if res.Digest != wantDigest || res.Ref != "127.0.0.1:5000/im/httpd@"+wantDigest {
		t.Errorf("result = %+v", res)
	}
	calls, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(calls)), "\n")
	if len(lines) != 2 {
		t.Fatalf("calls:\n%s", calls)
	}
	bud, push := lines[0], lines[1]
	for _, want := range []string{
		"--root /s/root --runroot /s/run bud", "--build-arg BASE_IMAGE=127.0.0.1:5000/im/soe@sha256:abc", "--build-arg EXTRA=1",
		"--label io.imagemode.layer=httpd", "--label org.opencontainers.image.revision=abc",
		"--secret id=entitlement-cert,src=" + secret, "--secret id=bootc-user-password-hash,src=",
		"--timestamp 1700000000", "--tls-verify=false", "--format oci",
	} {
		if !strings.Contains(bud, want) {
			t.Errorf("bud lacks %q:\n%s", want, bud)
		}
	}
	if !strings.Contains(push, "push --digestfile") || !strings.HasSuffix(push, "sha256:1111 docker://127.0.0.1:5000/im/httpd:build-r1-standin") {
		t.Errorf("push = %s", push)
	}
	ctxFiles, err := os.ReadFile(logFile + ".ctx")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(ctxFiles)); got != "./Containerfile\n./html/index.html\n./trust/policy.json" {
		t.Errorf("context sent to buildah:\n%s", got)
	}
	env, err := os.ReadFile(logFile + ".env")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env), "CONTAINERS_CONF=/etc/im.conf") {
		t.Errorf("env: %s", env)
	}
	tmp := b.tmpFiles
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range tmp {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temporary secret %s survived Close", f)
		}
	}
}

func TestBuildFailureShowsOutputTail(t *testing.T) {
	bin, _ := fakeBuildah(t, "bud")
	b, err := New(src, WithBinary(bin))
	if err != nil {
		t.Fatal(err)
	}
	req := request()
	req.Target = "ghcr.io/acme/im/httpd:build-r1-standin"
	_, err = b.Build(t.Context(), req)
	if err == nil || !strings.Contains(err.Error(), `building layer "httpd" with buildah`) || !strings.Contains(err.Error(), "step failed: bud") {
		t.Fatalf("error = %v", err)
	}
}

func TestNoTLSSkipForRemoteRegistries(t *testing.T) {
	bin, logFile := fakeBuildah(t, "")
	b, err := New(src, WithBinary(bin))
	if err != nil {
		t.Fatal(err)
	}
	req := request()
	req.Target = "ghcr.io/acme/im/httpd:build-r1-standin"
	if _, err := b.Build(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	calls, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(calls), "tls-verify") {
		t.Errorf("TLS verification disabled for a remote registry:\n%s", calls)
	}
}

func TestMissingSecretFile(t *testing.T) {
	if _, err := New(src, WithSecretFile("rhsm-ca", "/nonexistent/ca.pem")); err == nil || !strings.Contains(err.Error(), `build secret "rhsm-ca"`) {
		t.Errorf("error = %v", err)
	}
}
