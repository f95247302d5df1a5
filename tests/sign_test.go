//go:build integration

package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagemode/imagemode/ci/policy"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/tests/standin"
)

// secrets used in this file; TestSigningRoundTripAndHostPolicy checks that none of them is ever printed.
const (
	keyPassword      = "Xk9-pass-never-printed-4471"
	registryPassword = "Rg7-registry-token-never-printed-0912"
)

type keyPair struct{ priv, pub, dir string }

func pushRandom(t *testing.T, repo string) string {
	t.Helper()
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(repo + ":t")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo + "@" + d.String()
}

// sigpolicy runs the independent verifier (containers/image, as bootc and podman) with the policy files in root.
func sigpolicy(t *testing.T, root, image string) (bool, string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), env.SigPolicy, "--root", root, "--image", image).CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			return false, string(out)
		}
		t.Fatalf("sigpolicy %s: %v\n%s", image, err, out)
	}
	return true, string(out)
}

// TestSigningRoundTripAndHostPolicy builds the stand-in family with --trust-key, signs it with the CLI, extracts the
// SOE image's own /etc/containers/policy.json, registries.d and key, and asks containers/image — the policy engine
// of bootc and podman — to allow the signed image and refuse: unsigned; signed by another key; the digest copied to
// another repository without its .sig; the image and its .sig copied to another repository (matchRepository).
func TestSigningRoundTripAndHostPolicy(t *testing.T) {
	ctx := t.Context()
	key := generateKeyTB(t, keyPassword)
	other := generateKeyTB(t, "other-password")
	ns := env.Namespace(t)
	var outputs []string

	// 1. Build with the host trust policy for ns.
	pwFile := filepath.Join(key.dir, "registry-password")
	if err := os.WriteFile(pwFile, []byte(registryPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	reportFile := filepath.Join(t.TempDir(), "report.json")
	args := []string{"build-all", "--dir", standin.ContainerfilesDir(), "--profile", "standin", "--base-image", env.StandinBase(t),
		"--registry", ns, "--commit", testCommit, "--run-id", "sig1", "--trust-key", key.pub, "--report", reportFile,
		"--registry-username", "robot", "--registry-password-file", pwFile}
	res := env.Run(ctx, append(args, env.BuildahArgs()...)...)
	outputs = append(outputs, res.Stdout, res.Stderr)
	if res.Err != nil {
		t.Fatalf("build-all: %v\n%s", res.Err, res.Stderr)
	}

	// 2. Sign every layer from the report, verify with the CLI.
	pwEnv := []string{"IMAGEMODE_KEY_PASSWORD=" + keyPassword}
	res = env.RunEnv(ctx, pwEnv, "sign", "--key", key.priv, "--from-report", reportFile)
	outputs = append(outputs, res.Stdout, res.Stderr)
	if res.Err != nil || strings.Count(res.Stdout, "signed ") != 4 {
		t.Fatalf("sign: %v\n%s%s", res.Err, res.Stdout, res.Stderr)
	}
	res = env.Run(ctx, "verify", "--public-key", key.pub, "--from-report", reportFile)
	outputs = append(outputs, res.Stdout, res.Stderr)
	if res.Err != nil || strings.Count(res.Stdout, "OK ") != 4 {
		t.Fatalf("verify: %v\n%s%s", res.Err, res.Stdout, res.Stderr)
	}
	res = env.Run(ctx, "verify", "--public-key", other.pub, "--from-report", reportFile)
	outputs = append(outputs, res.Stdout, res.Stderr)
	if res.ExitCode != 1 || strings.Count(res.Stdout, "FAIL ") != 4 {
		t.Errorf("verify with another key: exit %d\n%s", res.ExitCode, res.Stdout)
	}
	res = env.RunEnv(ctx, []string{"IMAGEMODE_KEY_PASSWORD=wrong-" + keyPassword}, "sign", "--key", key.priv, "--from-report", reportFile)
	outputs = append(outputs, res.Stdout, res.Stderr)
	if res.ExitCode != 1 || !strings.Contains(res.Stderr, "loading the signing key") {
		t.Errorf("sign with a wrong password: exit %d\n%s", res.ExitCode, res.Stderr)
	}

	// 3. The SOE's own policy files, as a host would have them.
	reg := registry.New()
	soeRef := reportLayerRef(t, reportFile, "soe")
	root := t.TempDir()
	for _, p := range []string{policy.PolicyPath, policy.RegistriesDPath, policy.KeyPath} {
		data, err := reg.ReadFile(ctx, soeRef, p)
		if err != nil || data == nil {
			t.Fatalf("the SOE image has no %s (%v)", p, err)
		}
		dst := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// 4. The independent verifier's answers.
	homepage := reportLayerRef(t, reportFile, "homepage")
	if ok, out := sigpolicy(t, root, homepage); !ok {
		t.Errorf("signed image refused by containers/image:\n%s", out)
	}
	unsigned := pushRandom(t, ns+"/unsigned")
	otherSigned := pushRandom(t, ns+"/other")
	res = env.RunEnv(ctx, []string{"IMAGEMODE_KEY_PASSWORD=other-password"}, "sign", "--key", other.priv, "--image", otherSigned)
	if res.Err != nil {
		t.Fatalf("sign with the other key: %v\n%s", res.Err, res.Stderr)
	}
	_, digest, _ := strings.Cut(homepage, "@")
	srcRepo := ns + "/homepage"
	if err := reg.Copy(ctx, homepage, ns+"/copied"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Copy(ctx, homepage, ns+"/copied-with-sig"); err != nil {
		t.Fatal(err)
	}
	if err := reg.CopyAttachment(ctx, srcRepo+"@"+digest, ns+"/copied-with-sig", "sig"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, image, want string }{
		{"unsigned", unsigned, "signature"},
		{"signed by another key", otherSigned, "signature"},
		{"copied without its .sig", ns + "/copied@" + digest, "signature"},
		{"copied with its .sig", ns + "/copied-with-sig@" + digest, ""},
	} {
		ok, out := sigpolicy(t, root, c.image)
		if ok {
			t.Errorf("%s: containers/image allowed %s:\n%s", c.name, c.image, out)
		}
		if !strings.Contains(out, "REFUSED") || (c.want != "" && !strings.Contains(strings.ToLower(out), c.want)) {
			t.Errorf("%s: unexpected verifier output:\n%s", c.name, out)
		}
		t.Logf("%s: %s", c.name, strings.TrimSpace(out))
	}

	// 4b. The reject-by-default policy (the default with --trust-key): unsigned images next to the namespace and
	// anywhere else are refused, the stock base too (not allowed unless --trust-allow-base); a local
	// containers-storage image is accepted.
	sibling := pushRandom(t, ns+"-evil/homepage")
	elsewhere := pushRandom(t, env.Registry+"/elsewhere/app")
	base := env.StandinBase(t)
	for _, c := range []struct{ name, image string }{{"sibling repository", sibling}, {"elsewhere", elsewhere}, {"the stock base", base}} {
		if ok, out := sigpolicy(t, root, c.image); ok {
			t.Errorf("reject mode allowed the unsigned %s %s:\n%s", c.name, c.image, out)
		}
	}
	if ok, out := sigpolicyLocal(t, root, "containers-storage", "localhost/loaded:latest"); !ok {
		t.Errorf("reject mode refused a containers-storage image:\n%s", out)
	}
	// The same key in the other modes, rendered by the project's code from the base's policy and checked by
	// containers/image: namespaces mode accepts the sibling (what reject mode exists for); --trust-allow-base
	// accepts the stock base and still refuses the sibling.
	basePolicy, err := reg.ReadFile(ctx, base, policy.PolicyPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(key.pub)
	if err != nil {
		t.Fatal(err)
	}
	br, err := registry.ParseRef(base)
	if err != nil {
		t.Fatal(err)
	}
	baseRepo := br.Context().Name()
	for _, m := range []struct {
		cfg  policy.Config
		want map[string]bool
	}{
		{policy.Config{Mode: policy.ModeNamespaces}, map[string]bool{sibling: true, elsewhere: true, homepage: true, unsigned: false}},
		{policy.Config{Mode: policy.ModeReject, AllowBase: true, BaseRepository: baseRepo}, map[string]bool{base: true, sibling: false, homepage: true}},
	} {
		m.cfg.PublicKey, m.cfg.Namespaces = pub, []string{ns}
		files, err := policy.Files(basePolicy, &m.cfg)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		for p, data := range files {
			dst := filepath.Join(dir, strings.TrimPrefix(p, policy.ContextDir))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for img, want := range m.want {
			if ok, out := sigpolicy(t, dir, img); ok != want {
				t.Errorf("mode %s (allow base %v): %s allowed=%v, want %v\n%s", m.cfg.Mode, m.cfg.AllowBase, img, ok, want, out)
			}
		}
	}

	// 5. No secret was ever printed.
	privPEM, err := os.ReadFile(key.priv)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(privPEM), "\n")
	for _, out := range outputs {
		for _, secret := range []string{keyPassword, registryPassword, lines[1], lines[2]} {
			if secret != "" && strings.Contains(out, secret) {
				t.Errorf("a secret (%q...) appears in the CLI output", secret[:6])
			}
		}
	}
}

// sigpolicyLocal asks the verifier about an image of a local transport (containers-storage, oci, ...).
func sigpolicyLocal(t *testing.T, root, transport, name string) (bool, string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), env.SigPolicy, "--root", root, "--transport", transport, "--image", name).CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			return false, string(out)
		}
		t.Fatalf("sigpolicy %s:%s: %v\n%s", transport, name, err, out)
	}
	return true, string(out)
}

func reportLayerRef(t *testing.T, file, layer string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := report.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	l, ok := rep.Layer(layer)
	if !ok {
		t.Fatalf("no %s in the report", layer)
	}
	return l.Ref
}
