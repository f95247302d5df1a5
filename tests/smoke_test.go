//go:build integration

package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/tests/harness"
	"github.com/imagemode/imagemode/tests/standin"
)

// accel is what .ci/run asks for (tcg on the development machines, whose KVM cannot run a guest).
func accel() string {
	if a := os.Getenv("IMAGEMODE_ACCEL"); a != "" {
		return a
	}
	return "auto"
}

// qemuProcesses counts running QEMU processes.
func qemuProcesses(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("pgrep", "-c", "-f", "qemu-system").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			return 0
		}
		t.Fatalf("pgrep: %v", err)
	}
	n := 0
	for _, c := range strings.TrimSpace(string(out)) {
		n = n*10 + int(c-'0')
	}
	return n
}

// requireQEMU fails (never skips) when QEMU or mkfs.ext4 is missing.
func requireQEMU(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the smoke tests need %s (.ci/run installs qemu-system-x86 and e2fsprogs): %v", tool, err)
		}
	}
}

// variant copies the stand-in family and applies edits (file → function of its content).
func variant(t *testing.T, edits map[string]func(string) string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "containerfiles")
	if err := harness.CopyDir(standin.ContainerfilesDir(), dir); err != nil {
		t.Fatal(err)
	}
	for f, edit := range edits {
		p := filepath.Join(dir, f)
		data, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(edit(string(data))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// buildFamily builds a containerfiles dir and returns its report.
func buildFamily(t *testing.T, dir, runID string) *report.Report {
	t.Helper()
	res, rep := buildStandin(t, dir, env.Namespace(t), "--run-id", runID)
	if res.Err != nil || rep == nil {
		t.Fatalf("build-all %s: %v\n%s", dir, res.Err, res.Stderr)
	}
	return rep
}

// runSmoke runs `imagemode smoke` on one layer of a report and returns the verdict and the CLI result.
func runSmoke(t *testing.T, dir string, rep *report.Report, layer string, deadline time.Duration) (smoke.Verdict, harness.Result, time.Duration) {
	t.Helper()
	l, ok := rep.Layer(layer)
	if !ok {
		t.Fatalf("no %s in the report", layer)
	}
	before := qemuProcesses(t)
	start := time.Now()
	res := env.Run(t.Context(), "smoke", "--dir", dir, "--image", l.Ref, "--accel", accel(), "--deadline", deadline.String(), "--json")
	took := time.Since(start)
	if after := qemuProcesses(t); after > before {
		t.Errorf("%d QEMU process(es) left behind by the smoke test of %s", after-before, layer)
	}
	var vs []smoke.Verdict
	if err := json.Unmarshal([]byte(res.Stdout), &vs); err != nil || len(vs) != 1 {
		t.Fatalf("smoke %s: exit %d, no verdict (%v)\nstdout:\n%s\nstderr:\n%s", layer, res.ExitCode, err, res.Stdout, res.Stderr)
	}
	return vs[0], res, took
}

// TestSmokePassesOnTheStandinFamily boots the stand-in soe, homepage and database images.
func TestSmokePassesOnTheStandinFamily(t *testing.T) {
	requireQEMU(t)
	dir := standin.ContainerfilesDir()
	rep := buildFamily(t, dir, "smoke-ok")
	for _, layer := range []string{"soe", "homepage", "database"} {
		v, res, _ := runSmoke(t, dir, rep, layer, 180*time.Second)
		if v.Verdict != smoke.Pass || res.ExitCode != 0 {
			t.Errorf("%s: %s (exit %d): %s\n%s", layer, v.Verdict, res.ExitCode, v.Reason, v.SerialTail)
			continue
		}
		l, _ := rep.Layer(layer)
		if v.Digest != l.Digest || v.Mode != smoke.ModeEphemeral || v.Accel == "" {
			t.Errorf("%s verdict fields: %+v", layer, v)
		}
		want := map[string][]string{"soe": {"multi-user"}, "homepage": {"multi-user", "http /"}, "database": {"multi-user", "mariadb"}}[layer]
		if len(v.Probes) != len(want) {
			t.Errorf("%s probes: %+v", layer, v.Probes)
		}
		for i, p := range v.Probes {
			if p.Name != want[i] || !p.OK || p.SinceBootMS <= 0 {
				t.Errorf("%s probe %d: %+v", layer, i, p)
			}
		}
		t.Logf("%s: PASS, probes %+v", layer, v.Probes)
	}
}

// TestSmokeFailsOnBrokenVariants: each broken image must FAIL with a reason and the serial-log tail, within its
// deadline, and leave no QEMU behind.
func TestSmokeFailsOnBrokenVariants(t *testing.T) {
	requireQEMU(t)
	const deadline = 50 * time.Second
	cases := []struct {
		name   string
		layer  string
		edits  map[string]func(string) string
		reason string
	}{
		{
			// The seed's bug: homepage built FROM the SOE, so no Apache runs.
			name: "apache not enabled (homepage FROM soe)", layer: "homepage",
			edits: map[string]func(string) string{"layers.yaml": func(s string) string {
				return strings.Replace(s, "  - name: homepage\n    parent: httpd", "  - name: homepage\n    parent: soe", 1)
			}},
			reason: "http /",
		},
		{
			name: "wrong page content", layer: "homepage",
			edits: map[string]func(string) string{"homepage/html/index.html": func(s string) string {
				return strings.ReplaceAll(s, "Image Mode for RHEL", "Under construction")
			}},
			reason: `lacks "Image Mode for RHEL"`,
		},
		{
			name: "mariadb not listening", layer: "database",
			edits: map[string]func(string) string{"database/files/etc/mysql/mariadb.conf.d/90-imagemode.cnf": func(s string) string {
				return strings.Replace(s, "bind-address = 0.0.0.0", "bind-address = 127.0.0.1", 1)
			}},
			reason: "mariadb",
		},
		{
			name: "kernel cannot find its root (panics)", layer: "soe",
			edits: map[string]func(string) string{"soe/Containerfile": func(s string) string {
				// An empty initramfs: the kernel has no virtio_blk driver to mount root=/dev/vda.
				return strings.Replace(s, "RUN bootc container lint", "RUN for k in /usr/lib/modules/*; do : > \"$k/initramfs.img\"; done\nRUN bootc container lint", 1)
			}},
			reason: "Kernel panic",
		},
		{
			name: "never answers", layer: "soe",
			edits: map[string]func(string) string{"soe/files/usr/lib/bootc/kargs.d/99-hang.toml": func(string) string {
				// init is a shell waiting on a console that never types.
				return "kargs = [\"init=/bin/sh\"]\n"
			}},
			reason: "not passed within",
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := variant(t, tc.edits)
			rep := buildFamily(t, dir, "broken"+string(rune('a'+i)))
			v, res, took := runSmoke(t, dir, rep, tc.layer, deadline)
			if v.Verdict != smoke.Fail || res.ExitCode != 1 {
				t.Fatalf("verdict %s, exit %d: a broken image passed", v.Verdict, res.ExitCode)
			}
			if !strings.Contains(v.Reason, tc.reason) {
				t.Errorf("reason %q does not mention %q", v.Reason, tc.reason)
			}
			if strings.TrimSpace(v.SerialTail) == "" {
				t.Error("a failed verdict must carry the serial-log tail")
			}
			if !strings.Contains(res.Stdout, "serial") && !strings.Contains(res.Stdout, "serialTail") {
				t.Errorf("the CLI output does not show the serial log:\n%s", res.Stdout)
			}
			// Boot preparation (pull, unpack, mkfs) comes on top of the deadline, which counts from the VM's start.
			if took > deadline+60*time.Second {
				t.Errorf("took %s, deadline %s", took, deadline)
			}
			t.Logf("FAIL as expected in %s: %s", took.Round(time.Second), v.Reason)
		})
	}
}
