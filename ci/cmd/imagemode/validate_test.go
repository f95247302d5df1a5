package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagemode/imagemode/ci/internal/regtest"
	"github.com/imagemode/imagemode/ci/provenance"
	"github.com/imagemode/imagemode/ci/registry"
)

// TestPromoteArgumentsCheckedFirst: bad arguments are usage errors (exit 2), named, with no stack trace and before
// the registry is contacted (the registry here does not exist).
func TestPromoteArgumentsCheckedFirst(t *testing.T) {
	base := []string{"promote", "--tag", "v1.0.0", "--registry", "127.0.0.1:1/im", "--commit", strings.Repeat("a", 40),
		"--dir", "../../../containerfiles", "--public-key", "x.pub"}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--profile", "centos stream"}, `--profile "centos stream"`},
		{[]string{"--profile", ""}, `--profile ""`},
		{[]string{"--profile", "a", "--profile", "a"}, "given twice"},
		{[]string{"--profile", "a", "--tag", "v1.2"}, "--tag"},
		{[]string{"--profile", "a", "--commit", "xyz"}, "--commit"},
		{[]string{"--profile", "a", "--report", t.TempDir()}, "is a directory"},
		{[]string{"--profile", "a", "--report", filepath.Join(t.TempDir(), "no", "such", "dir", "r.json")}, "cannot be written"},
	}
	for _, c := range cases {
		code, _, errs := runCLI(t, append(append([]string{}, base...), c.args...)...)
		if code != 2 || !strings.Contains(errs, c.want) || strings.Contains(errs, "goroutine") || strings.Contains(errs, "connect") {
			t.Errorf("%v: exit %d, %q; want exit 2 naming %q", c.args, code, errs, c.want)
		}
	}
}

// TestGenerateKeyWholeOrNothing: an existing half is never overwritten and nothing is left half-written.
func TestGenerateKeyWholeOrNothing(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("IMAGEMODE_KEY_PASSWORD", "pw")
	prefix := filepath.Join(dir, "k")
	if err := os.WriteFile(prefix+".pub", []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "generate-key", "--output-prefix", prefix); code != 2 || !strings.Contains(errs, "exists") {
		t.Fatalf("over an existing .pub: exit %d %s", code, errs)
	}
	if _, err := os.Stat(prefix + ".key"); err == nil {
		t.Error("a .key was written beside the existing .pub")
	}
	// A folder that cannot be written: nothing at all is left.
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 { // root writes anyway
		if code, _, _ := runCLI(t, "generate-key", "--output-prefix", filepath.Join(ro, "k")); code == 0 {
			t.Error("generate-key into a read-only folder succeeded")
		}
	}
	if err := writeKeyPair(filepath.Join(dir, "missing", "k"), []byte("a"), []byte("b"), os.Stdout); err == nil {
		t.Error("writing into a missing folder succeeded")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), "tmp") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	good := filepath.Join(dir, "good")
	if code, out, errs := runCLI(t, "generate-key", "--output-prefix", good); code != 0 || strings.Count(out, "wrote") != 2 {
		t.Fatalf("generate-key: exit %d %s %s", code, out, errs)
	}
	if fi, err := os.Stat(good + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file %v %v", fi, err)
	}
}

// TestSignChecksEveryReportRefFirst: a report with one broken reference signs nothing.
func TestSignChecksEveryReportRefFirst(t *testing.T) {
	host := regtest.Start(t, nil)
	d, err := regtest.Push(t.Context(), host+"/im/soe:x", 256, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep := `{"version":1,"runId":"r","commit":"` + strings.Repeat("a", 40) + `","profile":"p","layers":[` +
		`{"name":"soe","ref":"` + host + `/im/soe@` + d + `","digest":"` + d + `"},{"name":"httpd","ref":"` + host + `/im/httpd:latest"}]}`
	file := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(file, []byte(rep), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv("IMAGEMODE_KEY_PASSWORD", "pw")
	if code, _, errs := runCLI(t, "generate-key", "--output-prefix", filepath.Join(dir, "c")); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs := runCLI(t, "sign", "--key", filepath.Join(dir, "c.key"), "--from-report", file)
	if code != 2 || !strings.Contains(errs, `layer "httpd"`) || strings.Contains(out, "signed") {
		t.Fatalf("sign of a report with a tag reference: exit %d\n%s%s", code, out, errs)
	}
	noSignature(t, host+"/im/soe")
}

// TestSignRefusesAMissingDigest: no signature is written for a digest the repository does not hold, and verify says
// "unreachable" (not "no valid signature") when the registry does not answer.
func TestSignRefusesAMissingDigestAndVerifySaysUnreachable(t *testing.T) {
	host := regtest.Start(t, nil)
	if _, err := regtest.Push(t.Context(), host+"/im/soe:x", 256, 1, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv("IMAGEMODE_KEY_PASSWORD", "pw")
	if code, _, errs := runCLI(t, "generate-key", "--output-prefix", filepath.Join(dir, "c")); code != 0 {
		t.Fatal(errs)
	}
	missing := host + "/im/soe@sha256:" + strings.Repeat("4", 64)
	code, out, errs := runCLI(t, "sign", "--key", filepath.Join(dir, "c.key"), "--image", missing)
	if code == 0 || !strings.Contains(errs, "holds no manifest with that digest") {
		t.Fatalf("sign of a missing digest: exit %d\n%s%s", code, out, errs)
	}
	noSignature(t, host+"/im/soe")
	// A port nothing listens on.
	dead := freeAddr(t)
	code, out, errs = runCLI(t, "verify", "--public-key", filepath.Join(dir, "c.pub"), "--image", dead+"/im/soe@sha256:"+strings.Repeat("4", 64))
	if code == 0 || !strings.Contains(out, "UNREACHABLE") || !strings.Contains(errs, "the registry is unreachable") || strings.Contains(errs+out, "no valid signature") {
		t.Fatalf("verify against a dead registry: exit %d\n%s%s", code, out, errs)
	}
}

// TestPromoteTagLengthCheckedFirst: a pre-release whose tag would pass 128 characters is a usage error (exit 2)
// before any registry call (the registry here does not exist).
func TestPromoteTagLengthCheckedFirst(t *testing.T) {
	long := "v1.0.0-" + strings.Repeat("rc", 60)
	code, _, errs := runCLI(t, "promote", "--tag", long, "--registry", "127.0.0.1:1/im", "--profile", "centos-stream-9",
		"--commit", strings.Repeat("a", 40), "--key", "/nonexistent.key")
	if code != 2 || !strings.Contains(errs, "characters long") || strings.Contains(errs, "127.0.0.1:1") {
		t.Fatalf("promote with a 134-character tag: exit %d\n%s", code, errs)
	}
}

// noSignature fails the test when repo holds a signature tag.
func noSignature(t *testing.T, repo string) {
	t.Helper()
	tags, err := registry.New().Tags(t.Context(), repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range tags {
		if strings.HasSuffix(tg, ".sig") {
			t.Errorf("signed anyway: %s", tg)
		}
	}
}

// The module names itself as the builder in provenance by default, with the id the provenance package defines.
func TestModuleBuilderIDIsTheProvenanceOne(t *testing.T) {
	if got := mdefault("run.ci.builder-id"); got != provenance.BuilderModule {
		t.Errorf("the module's run ci --builder-id defaults to %q, provenance.BuilderModule is %q", got, provenance.BuilderModule)
	}
}

// TestDiffArgumentsCheckedFirst: diff's bad arguments are usage errors (exit 2), named, before any registry is
// contacted.
func TestDiffArgumentsCheckedFirst(t *testing.T) {
	dir := t.TempDir()
	notReport := filepath.Join(dir, "x.json")
	if err := os.WriteFile(notReport, []byte(`{"version": 99}`), 0o644); err != nil {
		t.Fatal(err)
	}
	img := "127.0.0.1:1/im/soe@sha256:" + strings.Repeat("a", 64)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{}, "--from and --to"},
		{[]string{"--from", img}, "--from and --to"},
		{[]string{"--from", "Not A Ref!", "--to", img}, `--from "Not A Ref!"`},
		{[]string{"--from", img, "--to", img, "--release-registry", "127.0.0.1:1/rel"}, "--release-registry goes with --from-report"},
		{[]string{"--from-report", notReport, "--from", img}, "--from-report excludes --from and --to"},
		{[]string{"--from-report", filepath.Join(dir, "missing.json")}, "--from-report"},
		{[]string{"--from-report", notReport}, "report version 99"},
	}
	for _, c := range cases {
		code, _, errs := runCLI(t, append([]string{"diff"}, c.args...)...)
		if code != 2 || !strings.Contains(errs, c.want) || strings.Contains(errs, "connect") {
			t.Errorf("%v: exit %d, %q; want exit 2 naming %q", c.args, code, errs, c.want)
		}
	}
	// promote --dry-run needs no key; without --dry-run the key is still required.
	code, _, errs := runCLI(t, "promote", "--tag", "v1.0.0", "--registry", "127.0.0.1:1/im", "--commit", strings.Repeat("a", 40),
		"--dir", "../../../containerfiles", "--public-key", "x.pub", "--profile", "centos-stream-9")
	if code != 2 || !strings.Contains(errs, "--dry-run needs none") {
		t.Errorf("promote without --key: exit %d, %q", code, errs)
	}
}
