//go:build module

package module

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/smoke"
)

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkModuleBuildAll prints, for build-all in the module on a family nothing of which is cached ("cold": a
// fresh base image; the module already loaded):
//
//	noop/cold         the wall time of an unchanged build-all over the cold one (goal ≤ 0.10, or ≤ 5 s); digests must
//	                  match. Nothing is signed yet: every layer goes through the engine's cached DockerBuild and Publish
//	noop-reused/cold  the same once the cold run is signed (what main.yml leaves behind: `ci` signs every run), so
//	                  that reuse by signature, on by default, finds every layer unchanged: no build at all
//	cold/critical     the cold run's wall time over its critical path, the longest parent chain (goal ≤ 1.10)
//	floor/cold        the cheapest call of the same shape — load, constructor, one function (`run --report`, which
//	                  only parses the report; a new run id each time, so that the engine's cache does not answer) and
//	                  a field — over the cold run (median of 3): what any `dagger call` of this module costs before
//	                  build-all does anything
func BenchmarkModuleBuildAll(b *testing.B) {
	mustCall(b, "--dir", standinDir, "lint") // the module is loaded before anything is timed
	for b.Loop() {
		base := freshBase(b)
		cold, cr := buildAll(b, base)
		noop, nr := buildAll(b, base)
		for _, l := range cold.Layers {
			if n, _ := noop.Layer(l.Name); n.Digest != l.Digest {
				b.Fatalf("%s: the no-op run gave %s, the cold one %s", l.Name, n.Digest, l.Digest)
			}
		}
		mustCall(b, append(append(mod(base), "run", "--report", reportJSON(b, cold), "sign"), keyArgs()...)...)
		reused, rr := buildAll(b, base)
		for _, l := range cold.Layers {
			if n, _ := reused.Layer(l.Name); n.Digest != l.Digest || n.Status != report.StatusReused {
				b.Fatalf("%s: the signed no-op run gave %s (%s), the cold one %s", l.Name, n.Digest, n.Status, l.Digest)
			}
		}
		var floors []time.Duration
		for range 3 {
			// A run id of its own each time: the engine would otherwise answer a repeated call from its cache.
			rep := *noop
			rep.RunID = noop.RunID + "-floor-" + randHex(4)
			floors = append(floors, mustCall(b, append(mod(base), "run", "--report", reportJSON(b, &rep), "report")...).wall)
		}
		floor := median(floors)
		b.ReportMetric(float64(floor)/float64(cr.wall), "floor/cold")
		b.ReportMetric(floor.Seconds(), "floor-s")
		b.ReportMetric(float64(rr.wall)/float64(cr.wall), "noop-reused/cold")
		b.ReportMetric(rr.wall.Seconds(), "noop-reused-s")
		b.ReportMetric(float64(nr.wall)/float64(cr.wall), "noop/cold")
		b.ReportMetric(nr.wall.Seconds(), "noop-s")
		b.ReportMetric(cr.wall.Seconds(), "cold-s")
		b.ReportMetric(float64(cold.DurationMS)/float64(cold.CriticalPath().Milliseconds()), "cold/critical")
		b.ReportMetric(cold.CriticalPath().Seconds(), "critical-s")
	}
}

// BenchmarkModuleSmokeOverhead prints P1 in the module: the smoke verdict's boot-to-ready time (QEMU start to the
// last probe's pass, from the verdict of `imagemode smoke`) over a bare boot-to-ready of the same image in the same
// toolbox container (tests/module/bareboot: the same ephemeral preparation and QEMU, GET / every 100 ms). Both run
// in one container of the module's toolbox (`dagger call toolbox with-exec …`), alternately. Medians of 3. Goal ≤ 1.15.
func BenchmarkModuleSmokeOverhead(b *testing.B) {
	rep, _ := buildAll(b, env.base)
	hp := layerRef(b, rep, "homepage")
	accel := env.accel
	if accel == "auto" {
		accel = "kvm"
		if _, err := os.Stat("/dev/kvm"); err != nil {
			accel = "tcg"
		}
	}
	bin := filepath.Join(b.TempDir(), "bareboot")
	build := exec.CommandContext(b.Context(), "go", "build", "-o", bin, "./tests/module/bareboot")
	build.Dir, build.Env = env.root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building bareboot: %v\n%s", err, out)
	}
	script := fmt.Sprintf(`set -e
for i in 1 2 3; do
  bareboot --image %[1]s --accel %[2]s
  imagemode smoke --image %[1]s --accel %[2]s --dir containerfiles --deadline 240s --report /tmp/v.json >/dev/null
  echo "verdict $(tr -d '\n' < /tmp/v.json)"
done`, hp, accel)
	for b.Loop() {
		r := mustCall(b, append(mod(env.base), "toolbox",
			"with-file", "--path", "/usr/local/bin/bareboot", "--source", bin, "--permissions", "0755",
			"with-directory", "--path", "/work/containerfiles", "--source", standinDir,
			"with-new-file", "--path", "/work/bench.sh", "--contents", script, // a list argument is CSV: no quotes in it
			"with-env-variable", "--name", "IMAGEMODE_CALL", "--value", randHex(8),
			"with-exec", "--insecure-root-capabilities", "--args", "bash,/work/bench.sh", "stdout")...)
		var bare, verdict []time.Duration
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			kind, rest, _ := strings.Cut(line, " ")
			switch kind {
			case "bare":
				ms, err := strconv.Atoi(rest)
				if err != nil {
					b.Fatalf("bare boot printed %q", line)
				}
				bare = append(bare, time.Duration(ms)*time.Millisecond)
			case "verdict":
				vs := parseVerdicts(b, rest, 1)
				if vs[0].Verdict != smoke.Pass {
					b.Fatalf("verdict %s: %s", vs[0].Verdict, vs[0].Reason)
				}
				d := time.Duration(vs[0].ReadyMS()) * time.Millisecond
				verdict = append(verdict, d)
				var probes []string
				for _, p := range vs[0].Probes {
					probes = append(probes, fmt.Sprintf("%s %.1f s", p.Name, float64(p.SinceBootMS)/1000))
				}
				b.Logf("boot %d: bare %s, verdict %s (%s)", len(verdict), bare[len(bare)-1].Round(100*time.Millisecond), d.Round(100*time.Millisecond), strings.Join(probes, ", "))
			}
		}
		if len(bare) != 3 || len(verdict) != 3 {
			b.Fatalf("%d bare boots and %d verdicts, want 3 each:\n%s", len(bare), len(verdict), r.stdout)
		}
		b.ReportMetric(float64(median(verdict))/float64(median(bare)), "P1")
		b.ReportMetric(median(bare).Seconds(), "bare-s")
		b.ReportMetric(median(verdict).Seconds(), "verdict-s")
	}
}

// BenchmarkModuleLoad prints what a user waits for on an engine with an empty cache (the engine's local cache
// pruned first, as on a fresh engine: a GitHub job's): the first `dagger functions` (the module's SDK code
// generated and compiled), the same again (warm), then the first function call (lint: the CLI compiled in the
// engine from its source, Go modules downloaded) and lint again. Goals: cold load ≤ 60 s on the development kit on
// an otherwise idle machine, warm ≤ 1 s.
//
// Beside them, the engine's own floor: tests/module/floor, the smallest Go module of the same shape (a constructor
// and a function returning an object with a field), loaded warm (floor-load-warm-s; load-warm/floor is the
// project's warm load over it) and called (floor-call-s: `dagger call --registry x noop report`). Medians of 3.
func BenchmarkModuleLoad(b *testing.B) {
	for b.Loop() {
		prune := exec.CommandContext(b.Context(), "dagger", "core", "engine", "local-cache", "prune")
		if out, err := prune.CombinedOutput(); err != nil {
			b.Fatalf("pruning the engine's cache: %v\n%s", err, tailOf(string(out)))
		}
		functions := func() time.Duration {
			cmd := exec.CommandContext(b.Context(), "dagger", "functions", "-m", env.root)
			cmd.Dir = env.root
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("dagger functions: %v\n%s", err, tailOf(string(out)))
			}
			return time.Since(start)
		}
		cold, warm := functions(), functions()
		first := mustCall(b, "--dir", standinDir, "lint").wall
		again := mustCall(b, "--dir", standinDir, "lint").wall
		floorDir := filepath.Join(env.root, "tests", "module", "floor")
		timed := func(args ...string) time.Duration {
			cmd := exec.CommandContext(b.Context(), "dagger", args...)
			cmd.Dir = floorDir
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("dagger %s (tests/module/floor): %v\n%s", strings.Join(args, " "), err, tailOf(string(out)))
			}
			return time.Since(start)
		}
		timed("functions", "-m", floorDir) // its cold load: the SDK's caches are the project's, so not a figure
		var floorLoads, floorCalls, warms []time.Duration
		for range 3 {
			floorLoads = append(floorLoads, timed("functions", "-m", floorDir))
			floorCalls = append(floorCalls, timed("call", "-m", floorDir, "--registry", "x", "noop", "report"))
			warms = append(warms, functions())
		}
		b.ReportMetric(median(floorLoads).Seconds(), "floor-load-warm-s")
		b.ReportMetric(float64(median(warms))/float64(median(floorLoads)), "load-warm/floor")
		b.ReportMetric(median(floorCalls).Seconds(), "floor-call-s")
		b.ReportMetric(cold.Seconds(), "load-cold-s")
		b.ReportMetric(median(append(warms, warm)).Seconds(), "load-warm-s")
		b.ReportMetric(first.Seconds(), "first-call-s")
		b.ReportMetric(again.Seconds(), "call-warm-s")
	}
}

func tailOf(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}
