//go:build module

package module

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/flow"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/release"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/sbom"
	"github.com/imagemode/imagemode/ci/smoke"
)

// TestModule runs the module's functions in the order a release takes them; later steps use earlier results.
func TestModule(t *testing.T) {
	var rep *report.Report
	var repBase string // the fresh base rep was built on

	t.Run("lint", func(t *testing.T) {
		r := mustCall(t, "--dir", standinDir, "lint")
		if !strings.Contains(r.stdout, "OK") {
			t.Errorf("lint: %q", r.stdout)
		}
		bad := call(t.Context(), "--dir", "ci/layers/testdata/cycle", "lint")
		if bad.err == nil || !strings.Contains(bad.stderr, "layers.yaml:") || !strings.Contains(bad.stderr, "cycle") {
			t.Errorf("lint of a cyclic graph: %v\n%s", bad.err, bad.tail())
		}
	})

	t.Run("plan", func(t *testing.T) {
		r := mustCall(t, append(mod(env.base), "plan", "--resolve")...)
		var pl struct {
			BaseDigest string `json:"baseDigest"`
			Levels     [][]struct {
				Name string `json:"name"`
			} `json:"levels"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &pl); err != nil {
			t.Fatalf("plan output: %v\n%s", err, r.stdout)
		}
		_, d, _ := strings.Cut(env.base, "@")
		if pl.BaseDigest != d || len(pl.Levels) != 3 {
			t.Errorf("plan: base %s (want %s), %d levels", pl.BaseDigest, d, len(pl.Levels))
		}
	})

	t.Run("build-all cold, then no-op", func(t *testing.T) {
		base := freshBase(t)
		cold, _ := buildAll(t, base)
		again, _ := buildAll(t, base)
		if len(cold.Layers) != 4 || !cold.Candidates {
			t.Fatalf("cold run: %d layers, candidates %v", len(cold.Layers), cold.Candidates)
		}
		for _, l := range cold.Layers {
			a, _ := again.Layer(l.Name)
			if a.Digest != l.Digest {
				t.Errorf("%s: no-op build-all gave %s, the cold one %s", l.Name, a.Digest, l.Digest)
			}
		}
		head, _, _ := strings.Cut(cold.Table(), "\n")
		if strings.Count(head, "@sha256:") != 1 {
			t.Errorf("report header %q", head)
		}
		rep, repBase = cold, base
	})
	if rep == nil {
		t.Fatal("no family was built")
	}

	t.Run("build one layer with its ancestors", func(t *testing.T) {
		r := mustCall(t, append(mod(repBase), "build-all", "--layer", "homepage", "--commit", env.commit, "--run-id", "mtbuild", "report")...)
		one, err := report.Parse([]byte(r.stdout))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range one.Layers {
			names = append(names, l.Name)
		}
		if strings.Join(names, ",") != "soe,httpd,homepage" {
			t.Errorf("built %v", names)
		}
	})

	t.Run("fields of the run", func(t *testing.T) {
		r := mustCall(t, append(mod(repBase), "build-all", "--commit", env.commit, "layer", "--name", "homepage", "digest")...)
		if hp, _ := rep.Layer("homepage"); strings.TrimSpace(r.stdout) != hp.Digest {
			t.Errorf("build-all layer --name homepage digest = %q, want %s", r.stdout, hp.Digest)
		}
		bad := call(t.Context(), append(mod(repBase), "run", "--report", reportJSON(t, rep), "layer", "--name", "nope", "digest")...)
		if bad.err == nil || !strings.Contains(bad.stderr, `--name "nope"`) {
			t.Errorf("an unknown layer: %v\n%s", bad.err, bad.tail())
		}
	})

	t.Run("sign and verify", func(t *testing.T) {
		js := reportJSON(t, rep)
		r := mustCall(t, append(append(mod(repBase), "run", "--report", js, "sign"), append(keyArgs(), "verify")...)...)
		if n := strings.Count(r.stdout, "OK "); n != 4 {
			t.Errorf("sign then verify: %d OK lines\n%s", n, r.stdout)
		}
		other := append(mod(repBase), "run", "--report", js, "verify")
		for i, a := range other {
			if a == env.pub {
				other[i] = env.otherPub
			}
		}
		bad := call(t.Context(), other...)
		if bad.err == nil || !strings.Contains(bad.stderr, "not verified") {
			t.Errorf("verify with a key that signed nothing: %v\n%s", bad.err, bad.tail())
		}
	})

	var tcgDatabase time.Duration // the fastest TCG verdict of the database image
	t.Run("smoke-test homepage and database under TCG, twice", func(t *testing.T) {
		imgs := []string{layerRef(t, rep, "homepage"), layerRef(t, rep, "database")}
		first := smokeTest(t, "tcg", imgs...)
		second := smokeTest(t, "tcg", imgs...)
		for i, v := range first {
			if v.Verdict != smoke.Pass || v.Accel != "tcg" || v.Mode != smoke.ModeEphemeral {
				t.Errorf("%s: %s %s %s: %s\n%s", v.Layer, v.Verdict, v.Accel, v.Mode, v.Reason, v.SerialTail)
			}
			if !second[i].Started.After(v.Started) {
				t.Errorf("%s: the second run's verdict started %s, the first %s: a verdict came from a cache", v.Layer, second[i].Started, v.Started)
			}
		}
		tcgDatabase = time.Duration(min(first[1].DurationMS, second[1].DurationMS)) * time.Millisecond
		if len(first[1].Probes) < 2 || first[1].Probes[1].Name != "mariadb" {
			t.Errorf("database probes: %+v", first[1].Probes)
		}
	})

	t.Run("smoke-test with accel auto", func(t *testing.T) {
		vs, r := smokeTestCall(t, "auto", layerRef(t, rep, "database"))
		v := vs[0]
		if v.Verdict != smoke.Pass {
			t.Fatalf("%s: %s\n%s", v.Verdict, v.Reason, v.SerialTail)
		}
		if v.Accel != "kvm" && v.Accel != "tcg" {
			t.Errorf("accel %q recorded", v.Accel)
		}
		if _, err := os.Stat("/dev/kvm"); err == nil {
			return // KVM may work here (GitHub runners): nothing fell back
		}
		// No KVM on this engine's host: the module tried KVM (it cannot see the engine's /dev/kvm), noticed the
		// failure, said so, and the TCG verdict cost at most 30 s more than a TCG-only one.
		if v.Accel != "tcg" {
			t.Errorf("no /dev/kvm here, yet the verdict says %s", v.Accel)
		}
		if !strings.Contains(r.stderr, "KVM did not start") && !strings.Contains(r.stderr, "restarting under TCG") {
			t.Errorf("no KVM fallback in the log:\n%s", r.tail())
		}
		if d := time.Duration(v.DurationMS) * time.Millisecond; tcgDatabase > 0 && d > tcgDatabase+30*time.Second {
			t.Errorf("auto took %s, TCG alone %s: the fallback cost more than 30 s", d, tcgDatabase)
		} else {
			t.Logf("auto verdict in %s (TCG alone %s)", d, tcgDatabase)
		}
	})

	t.Run("chained: build-all smoke-test sign, then a loaded report smoke-test attest, promote", func(t *testing.T) {
		// One chain: the no-op build, its smoke tests (homepage and database included), the signatures.
		r := mustCall(t, append(append(mod(repBase, "--accel", env.accel), "build-all", "--commit", env.commit, "smoke-test", "sign"), append(keyArgs(), "verdicts")...)...)
		vs := parseVerdicts(t, r.stdout, 4)
		for _, v := range vs {
			if v.Verdict != smoke.Pass || v.RunID == "" || v.Commit != env.commit {
				t.Errorf("%s: %s run %q commit %q", v.Layer, v.Verdict, v.RunID, v.Commit)
			}
		}
		// Steps run apart: the report loaded from an earlier run; smoke-test then attest (verdicts and run record).
		r = mustCall(t, append(append(mod(repBase, "--accel", env.accel), "run", "--report", reportJSON(t, rep), "smoke-test", "attest"), append(keyArgs(), "verdicts")...)...)
		parseVerdicts(t, r.stdout, 4)
		// The chained promote reads everything back from the registry.
		r = mustCall(t, append(append(mod(repBase), "candidate", "--commit", env.commit, "promote", "--tag", "v0.9.0"), keyArgs()...)...)
		var pr release.Report
		if err := json.Unmarshal([]byte(r.stdout), &pr); err != nil || !pr.Complete {
			t.Fatalf("chained promote: %v\n%s", err, r.stdout)
		}
	})

	t.Run("ci then promote", func(t *testing.T) {
		args := append(append(mod(repBase, "--accel", env.accel), "build-all", "--commit", env.commit, "ci"), append(keyArgs(), "result")...)
		r := mustCall(t, args...)
		var res flow.Result
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("ci output: %v\n%s", err, r.stdout)
		}
		if res.Verdict != smoke.Pass || len(res.Verdicts) != 4 || len(res.Attested) != 4 || len(res.Signed) != 4 || !res.Recorded {
			t.Fatalf("ci: verdict %s (%s), %d verdicts, %d attested, %d signed, recorded %v", res.Verdict, res.Reason, len(res.Verdicts), len(res.Attested), len(res.Signed), res.Recorded)
		}
		for _, l := range res.Build.Layers {
			if l.Status != report.StatusReused {
				t.Errorf("%s: %s; the signed family should have been reused", l.Name, l.Status)
			}
		}

		r = mustCall(t, append(append(mod(repBase), "promote", "--tag", "v1.0.0", "--commit", env.commit, "--expect-run", res.Build.RunID), keyArgs()...)...)
		var pr release.Report
		if err := json.Unmarshal([]byte(r.stdout), &pr); err != nil {
			t.Fatalf("promote output: %v\n%s", err, r.stdout)
		}
		if !pr.Complete || len(pr.Verified) != 4 {
			t.Fatalf("promotion: complete %v, %d verified\n%s", pr.Complete, len(pr.Verified), r.stdout)
		}
		got, err := registry.New().Digest(t.Context(), env.registry+"/homepage:1.0.0-standin")
		if err != nil {
			t.Fatal(err)
		}
		if hp, _ := res.Build.Layer("homepage"); got != hp.Digest {
			t.Errorf("homepage:1.0.0-standin → %s, want %s", got, hp.Digest)
		}
		if got, err := registry.New().Digest(t.Context(), env.registry+"/homepage:standin"); err != nil || got != got1(res) {
			t.Errorf("channel standin → %s (%v), want %s", got, err, got1(res))
		}

		// What a release changes on the hosts: the promotion's own report, a dry run, the run's changes, a diff.
		if len(pr.Changes) != 4 {
			t.Errorf("the promotion reports package changes for %d layers, want 4:\n%s", len(pr.Changes), r.stdout)
		}
		r = mustCall(t, append(mod(repBase), "promote", "--tag", "v1.0.1", "--commit", env.commit, "--dry-run")...)
		var dry release.Report
		if err := json.Unmarshal([]byte(r.stdout), &dry); err != nil || !dry.DryRun || dry.Complete || len(dry.Changes) != 4 {
			t.Fatalf("promote --dry-run (%v): %s", err, r.stdout)
		}
		for _, c := range dry.Changes {
			if c.From != c.To || len(c.Changes) != 0 {
				t.Errorf("dry run, %s: %s → %s: %s", c.Layer, c.From, c.To, c.Summary())
			}
		}
		if ok, err := registry.New().Exists(t.Context(), env.registry+"/homepage:1.0.1-standin"); err != nil || ok {
			t.Errorf("promote --dry-run wrote homepage:1.0.1-standin (%v, %v)", ok, err)
		}
		r = mustCall(t, append(mod(repBase), "run", "--report", reportJSON(t, res.Build), "changes")...)
		var cs []release.LayerChanges
		if err := json.Unmarshal([]byte(r.stdout), &cs); err != nil || len(cs) != 4 {
			t.Fatalf("run changes (%v): %s", err, r.stdout)
		}
		hp, _ := res.Build.Layer("homepage")
		db, _ := res.Build.Layer("database")
		r = mustCall(t, append(mod(repBase), "diff", "--from", db.Ref, "--to", hp.Ref)...)
		var d struct {
			Source  string        `json:"source"`
			Changes []sbom.Change `json:"changes"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || d.Source != "signed SBOM" || d.Changes == nil {
			t.Fatalf("diff (%v): %s", err, r.stdout)
		}
	})
}

// TestModuleErrors: failures say what failed and what to do, under the engine as on the host.
func TestModuleErrors(t *testing.T) {
	t.Run("a failed push names the layer and shows the partial report", func(t *testing.T) {
		host, _, _ := strings.Cut(env.registry, "/")
		h, _, _ := strings.Cut(host, ":")
		bad := os.Getenv("IMAGEMODE_MODULE_UNREACHABLE")
		if bad == "" {
			bad = h + ":1"
		}
		args := []string{"--registry", bad + "/imagemode", "--dir", standinDir, "--os-profile", "standin", "--base-image", env.base, "build-all", "--commit", env.commit}
		r := call(t.Context(), args...)
		if r.err == nil {
			t.Fatal("build-all to an unreachable registry succeeded")
		}
		for _, want := range []string{`building and publishing layer "soe"`, "LAYER", "candidate tags: not written"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("the error lacks %q\n%s", want, r.tail())
			}
		}
	})
	t.Run("a loopback registry is explained", func(t *testing.T) {
		r := call(t.Context(), "--registry", "127.0.0.1:5000/imagemode", "--dir", standinDir, "--os-profile", "standin", "--base-image", env.base, "build-all", "--commit", env.commit)
		if r.err == nil || !strings.Contains(r.stderr, "loopback") || !strings.Contains(r.stderr, "container") {
			t.Errorf("build-all --registry 127.0.0.1:…: %v\n%s", r.err, r.tail())
		}
	})
	t.Run("flags the CLI cannot make a configuration of get its own message", func(t *testing.T) {
		// The step server answers its first step with the error (it listens before it reads its flags).
		r := call(t.Context(), append(mod(env.base), "build-all", "--commit", env.commit, "--build-arg", "NOVALUE")...)
		if r.err == nil || !strings.Contains(r.stderr, `--build-arg "NOVALUE": want KEY=VALUE`) {
			t.Errorf("build-all --build-arg NOVALUE: %v\n%s", r.err, r.tail())
		}
	})
	t.Run("an unreachable disk builder points at --disk-builder", func(t *testing.T) {
		img := env.base
		r := call(t.Context(), "--disk-builder", env.registry+"/no/such-builder:latest", "disk-image", "--image", img, "--follow", env.registry+"/standin/base:bookworm",
			"--ssh-key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxxIYOq0bmR4+2DQEa3BmxWcDDRFr5BKkrGEXCvpi9H test", "size")
		if r.err == nil || !strings.Contains(r.stderr, "--disk-builder") {
			t.Errorf("disk-image with a missing builder: %v\n%s", r.err, r.tail())
		}
	})
}

// got1 is the homepage digest of a ci result.
func got1(res flow.Result) string {
	hp, _ := res.Build.Layer("homepage")
	return hp.Digest
}
