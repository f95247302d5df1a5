//go:build module

package module

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"dagger.io/dagger"

	"github.com/imagemode/imagemode/ci/engine"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/vm"
)

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkModuleBuildAll prints, for build-all in the module on a family nothing of which is cached ("cold": a
// fresh base image; the module already loaded):
//
//	noop/cold      the wall time of an unchanged build-all over the cold one (goal ≤ 0.10, or ≤ 5 s); digests must match
//	cold/critical  the cold run's wall time over its critical path, the longest parent chain (goal ≤ 1.10)
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
		b.ReportMetric(float64(nr.wall)/float64(cr.wall), "noop/cold")
		b.ReportMetric(nr.wall.Seconds(), "noop-s")
		b.ReportMetric(cr.wall.Seconds(), "cold-s")
		b.ReportMetric(float64(cold.DurationMS)/float64(cold.CriticalPath().Milliseconds()), "cold/critical")
		b.ReportMetric(cold.CriticalPath().Seconds(), "critical-s")
	}
}

// BenchmarkModuleSmokeOverhead prints P1 in the module: the smoke verdict's boot-to-ready time (QEMU start to the
// last probe's pass, from the verdict) over a bare boot-to-ready of the same image in the same QEMU container (the
// same argv; bash polls GET / every 100 ms beside QEMU). Medians of 3. Goal ≤ 1.15.
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
	client := connect(b)
	for b.Loop() {
		var bare, verdict []time.Duration
		for i := 0; i < 3; i++ {
			bare = append(bare, bareBoot(b, client, hp, vm.Accel(accel)))
			v := smokeTest(b, accel, hp)[0]
			if v.Verdict != smoke.Pass {
				b.Fatalf("verdict %s: %s", v.Verdict, v.Reason)
			}
			verdict = append(verdict, time.Duration(v.ReadyMS())*time.Millisecond)
			var probes []string
			for _, p := range v.Probes {
				probes = append(probes, fmt.Sprintf("%s %.1f s", p.Name, float64(p.SinceBootMS)/1000))
			}
			b.Logf("boot %d: bare %s, verdict %s (%s)", i+1, bare[i].Round(100*time.Millisecond), verdict[i].Round(100*time.Millisecond), strings.Join(probes, ", "))
		}
		b.ReportMetric(float64(median(verdict))/float64(median(bare)), "P1")
		b.ReportMetric(median(bare).Seconds(), "bare-s")
		b.ReportMetric(median(verdict).Seconds(), "verdict-s")
	}
}

// connect opens a Dagger session from the test process (the engine the dagger CLI uses).
func connect(b *testing.B) *dagger.Client {
	b.Helper()
	if os.Getenv("_EXPERIMENTAL_DAGGER_CLI_BIN") == "" {
		p, err := exec.LookPath("dagger")
		if err != nil {
			b.Fatal(err)
		}
		b.Setenv("_EXPERIMENTAL_DAGGER_CLI_BIN", p)
	}
	c, err := dagger.Connect(context.Background(), dagger.WithLogOutput(io.Discard))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// bareScript starts QEMU (its argv are the script's arguments) and polls the guest's page every 100 ms; it prints
// the milliseconds from QEMU's start to the first answer holding the homepage's text.
const bareScript = `qemu-system-x86_64 "$@" & q=$!
t0=$(date +%s%N)
while :; do
  # Each attempt has 2 s, like the host benchmark's HTTP client: a forwarded connection to a guest whose network
  # is not up yet stalls instead of failing.
  if timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080 && printf "GET / HTTP/1.0\r\nHost: guest\r\n\r\n" >&3 && grep -q "Image Mode for RHEL" <&3' 2>/dev/null; then
    break
  fi
  kill -0 "$q" || { echo "QEMU exited" >&2; exit 1; }
  [ $(( $(date +%s%N) - t0 )) -lt 240000000000 ] || { echo "no answer in 240 s" >&2; exit 1; }
  sleep 0.1
done
echo $(( ($(date +%s%N) - t0) / 1000000 ))
kill "$q"
`

// bareBoot boots the image's ephemeral boot, prepared by the module's own code, in the module's QEMU container.
func bareBoot(b *testing.B, c *dagger.Client, image string, accel vm.Accel) time.Duration {
	b.Helper()
	ctx := b.Context()
	qemu := engine.QEMUContainer(c, "")
	boot, err := engine.PrepareEphemeral(ctx, qemu, c.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From(image).Rootfs())
	if err != nil {
		b.Fatal(err)
	}
	cfg := boot.Config
	cfg.Forwards = []vm.Forward{{Guest: 80, Host: 8080}}
	args := append([]string{"bash", "-c", bareScript, "bare"}, cfg.Args(accel, "file:/tmp/serial.log", "unix:/tmp/qmp.sock,server=on,wait=off")...)
	out, err := boot.Container(qemu).WithEnvVariable("IMAGEMODE_BOOT", "bare-"+randHex(6)).
		WithExec(args, dagger.ContainerWithExecOpts{InsecureRootCapabilities: true}).Stdout(ctx)
	if err != nil {
		b.Fatalf("bare boot: %v", err)
	}
	ms, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		b.Fatalf("bare boot printed %q", out)
	}
	return time.Duration(ms) * time.Millisecond
}
