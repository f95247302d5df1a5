//go:build module

package module

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/smoke"
)

// result is one `dagger call`.
type result struct {
	stdout, stderr string
	err            error
	wall           time.Duration
}

// tail is the end of the engine's progress output, for failure messages.
func (r result) tail() string {
	s := r.stderr
	if len(s) > 6000 {
		s = "…" + s[len(s)-6000:]
	}
	return s
}

// call runs `dagger call ARGS` on the module in the repository root. Every test goes through it (and the few
// helpers below that know the module's functions), so a change of the module's shape is made here.
func call(ctx context.Context, args ...string) result {
	cmd := exec.CommandContext(ctx, "dagger", append([]string{"call", "-m", env.root}, args...)...)
	cmd.Dir = env.root
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	return result{stdout: out.String(), stderr: errb.String(), err: err, wall: time.Since(start)}
}

// mustCall fails the test when the call fails.
func mustCall(t testing.TB, args ...string) result {
	t.Helper()
	r := call(t.Context(), args...)
	if r.err != nil {
		t.Fatalf("dagger call %s: %v\n%s", strings.Join(args, " "), r.err, r.tail())
	}
	return r
}

const standinDir = "tests/standin/containerfiles"

// mod is the module's constructor arguments for the stand-in family built on base in this run's registry; every
// call starts with them (the functions and their chains follow).
func mod(base string, extra ...string) []string {
	return append([]string{"--registry", env.registry, "--dir", standinDir, "--os-profile", "standin", "--base-image", base,
		"--public-key", env.pub}, extra...)
}

// keyArgs sign with the run's key.
func keyArgs() []string {
	return []string{"--key", "file:" + env.key, "--password", "env:" + passwordEnv}
}

// buildAll runs build-all and returns its report.
func buildAll(t testing.TB, base string, extra ...string) (*report.Report, result) {
	t.Helper()
	args := append(append(mod(base), "build-all", "--commit", env.commit), extra...)
	r := mustCall(t, append(args, "report")...)
	rep, err := report.Parse([]byte(r.stdout))
	if err != nil {
		t.Fatalf("build-all report: %v\n%s", err, r.stdout)
	}
	return rep, r
}

// smokeTest runs smoke-test on images and returns the verdicts.
func smokeTest(t testing.TB, accel string, images ...string) []smoke.Verdict {
	t.Helper()
	vs, _ := smokeTestCall(t, accel, images...)
	return vs
}

// smokeTestCall is smokeTest with the call's output (the engine's progress, the module's log lines).
func smokeTestCall(t testing.TB, accel string, images ...string) ([]smoke.Verdict, result) {
	t.Helper()
	args := mod(env.base, "--accel", accel, "images")
	for _, i := range images {
		args = append(args, "--image", i)
	}
	r := mustCall(t, append(args, "smoke-test", "verdicts")...)
	return parseVerdicts(t, r.stdout, len(images)), r
}

func parseVerdicts(t testing.TB, out string, n int) []smoke.Verdict {
	t.Helper()
	var vs []smoke.Verdict
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("verdicts: %v\n%s", err, out)
	}
	if len(vs) != n {
		t.Fatalf("%d verdicts, want %d", len(vs), n)
	}
	return vs
}

// freshBase pushes the stand-in base with one more small layer: an image no build has used, so that nothing of
// a family built on it is in the engine's cache (a cold build).
func freshBase(t testing.TB) string {
	t.Helper()
	ref, err := name.ParseReference(env.base)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	nonce := randHex(8)
	layer := static.NewLayer(tarOf(t, "etc/imagemode-test-nonce", nonce+"\n"), types.OCIUncompressedLayer)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.ParseReference(env.registry + "/standin/base:fresh-" + nonce)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s/standin/base@%s", env.registry, d)
}

func layerRef(t testing.TB, rep *report.Report, name string) string {
	t.Helper()
	l, ok := rep.Layer(name)
	if !ok {
		t.Fatalf("the report has no layer %q", name)
	}
	return l.Ref
}

func reportJSON(t testing.TB, rep *report.Report) string {
	t.Helper()
	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
