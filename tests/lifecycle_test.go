//go:build integration

package tests

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/guest"
	"github.com/imagemode/imagemode/ci/lifecycle"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/smoke"
	"github.com/imagemode/imagemode/ci/vm"
	"github.com/imagemode/imagemode/tests/harness"
	"github.com/imagemode/imagemode/tests/standin"
	"github.com/imagemode/imagemode/tests/standin/bootcd"
)

// lifecycleFamily builds the stand-in family with the host trust policy, then a changed homepage (the
// candidate), both signed, and an unsigned and a foreign-signed image in the same namespace.
type lifecycleFamily struct {
	ns              string
	key             keyPair
	first, second   *report.Report
	unsigned, other string
	// outside is unsigned, in a sibling repository outside the trusted namespace (reject mode refuses it).
	outside string
	dir     string
}

func buildLifecycleFamily(t *testing.T) *lifecycleFamily {
	t.Helper()
	f := &lifecycleFamily{ns: env.Namespace(t), key: generateKeyTB(t, keyPassword)}
	f.dir = filepath.Join(t.TempDir(), "containerfiles")
	if err := harness.CopyDir(standin.ContainerfilesDir(), f.dir); err != nil {
		t.Fatal(err)
	}
	build := func(runID, profile string) *report.Report {
		t.Helper()
		args := []string{"build-all", "--dir", f.dir, "--profile", profile, "--base-image", env.StandinBase(t),
			"--registry", f.ns, "--commit", testCommit, "--run-id", runID, "--trust-key", f.key.pub,
			"--public-key", f.key.pub, "--json"}
		res := env.Run(t.Context(), append(args, env.BuildahArgs()...)...)
		if res.Err != nil {
			t.Fatalf("build-all: %v\n%s", res.Err, res.Stderr)
		}
		rep, err := report.Parse([]byte(res.Stdout))
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	sign := func(rep *report.Report) {
		t.Helper()
		args := []string{"sign", "--key", f.key.priv}
		for _, l := range rep.Layers {
			args = append(args, "--image", l.Ref)
		}
		if res := env.RunEnv(t.Context(), []string{"IMAGEMODE_KEY_PASSWORD=" + keyPassword}, args...); res.Err != nil {
			t.Fatalf("sign: %v\n%s", res.Err, res.Stderr)
		}
	}
	f.first = build("lc1", "standin")
	sign(f.first)
	edit := func(from, to string) {
		t.Helper()
		(&reuseEnv{t: t, dir: f.dir}).edit("homepage/html/index.html", from, to)
	}
	edit("Boot every image", "Boot and test every image")
	f.second = build("lc2", "standin")
	sign(f.second)
	edit("Boot and test every image", "Boot, test and trust every image")
	third := build("lc3", "standin")
	hp, _ := third.Layer("homepage")
	f.unsigned = hp.Ref // never signed
	f.other = pushRandom(t, f.ns+"/homepage")
	f.outside = pushRandom(t, f.ns+"-evil/homepage")
	otherKey := generateKeyTB(t, "other-password")
	if res := env.RunEnv(t.Context(), []string{"IMAGEMODE_KEY_PASSWORD=other-password"}, "sign", "--key", otherKey.priv, "--image", f.other); res.Err != nil {
		t.Fatalf("sign with another key: %v", res.Err)
	}
	return f
}

func homepageProbes() []smoke.Probe {
	return []smoke.Probe{smoke.HTTP{Path: "/", Status: 200, Expect: "Image Mode for RHEL"}}
}

// runLifecycle boots the family's first homepage on a stand-in host following a test channel and runs the
// life-cycle test towards the second homepage.
func runLifecycle(t *testing.T, f *lifecycleFamily, faults bootcd.Faults, deadline time.Duration) (*lifecycle.Report, *bootcd.Host) {
	t.Helper()
	ctx := t.Context()
	reg := registry.New()
	orig, _ := f.first.Layer("homepage")
	cand, _ := f.second.Layer("homepage")
	channelTag := "test-" + strings.ReplaceAll(t.Name(), "/", "-")
	channelTag = strings.ToLower(strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(channelTag))
	if len(channelTag) > 100 {
		channelTag = channelTag[:100]
	}
	if err := reg.Tag(ctx, orig.Ref, channelTag); err != nil {
		t.Fatal(err)
	}
	sshKey, err := guest.NewKey("imagemode-lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	a, err := vm.ParseAccel(accel())
	if err != nil {
		t.Fatal(err)
	}
	before := qemuProcesses(t)
	host, err := bootcd.Start(ctx, bootcd.Config{
		Registry: reg, SigPolicy: env.SigPolicy, Key: sshKey, GuestPorts: []int{80}, Accel: a, Work: t.TempDir(),
		Initial: bootcd.Deployment{Ref: orig.Repository + ":" + channelTag, Digest: orig.Digest}, Faults: faults,
		Log: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := host.Close(); err != nil {
			t.Logf("closing the stand-in host: %v", err)
		}
		if after := qemuProcesses(t); after > before {
			t.Errorf("%d QEMU process(es) left behind", after-before)
		}
	})
	rep, err := lifecycle.Run(ctx, lifecycle.Config{
		Machine: host, User: "root", Key: sshKey,
		Original: orig.Digest, Candidate: cand.Ref,
		Channel: orig.Repository + ":" + channelTag,
		MoveChannel: func(ctx context.Context, digest string) error {
			return reg.Tag(ctx, orig.Repository+"@"+digest, channelTag)
		},
		Probes: homepageProbes(), Refused: []string{f.unsigned, f.other, f.outside}, StepDeadline: deadline,
	})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.MarshalIndent(rep.Steps, "", "  ")
	t.Logf("life-cycle %s in %s: %s\n%s", rep.Verdict, time.Duration(rep.DurationMS)*time.Millisecond, rep.Reason, out)
	return rep, host
}

// TestLifecycleOnStandin: switch, rollback and upgrade along a channel on a stand-in VM under TCG, with the SOE's
// signature policy refusing an unsigned and a foreign-signed image; then the failures the report must name.
func TestLifecycleOnStandin(t *testing.T) {
	requireQEMU(t)
	f := buildLifecycleFamily(t)

	t.Run("pass", func(t *testing.T) {
		rep, host := runLifecycle(t, f, bootcd.Faults{}, 4*time.Minute)
		if rep.Verdict != smoke.Pass {
			t.Fatalf("life-cycle failed: %s\n%s", rep.Reason, rep.SerialTail)
		}
		if host.Boots() != 4 {
			t.Errorf("%d boots, want 4 (start, switch, rollback, upgrade)", host.Boots())
		}
		var refusals string
		for _, e := range rep.Transcript {
			if strings.HasPrefix(e.Command, "bootc switch "+f.unsigned) || strings.HasPrefix(e.Command, "bootc switch "+f.other) {
				refusals += e.Stderr
			}
		}
		if !strings.Contains(refusals, "A signature was required") || !strings.Contains(refusals, "signature verification failed") {
			t.Errorf("the refusals do not come from the signature policy:\n%s", refusals)
		}
		var outside string
		for _, e := range rep.Transcript {
			if strings.HasPrefix(e.Command, "bootc switch "+f.outside) {
				outside += e.Stderr
			}
		}
		if !strings.Contains(outside, "rejected by policy") {
			t.Errorf("the unsigned image outside the namespace was not refused by the reject-by-default policy:\n%s", outside)
		}
	})
	t.Run("reboot never comes back", func(t *testing.T) {
		rep, _ := runLifecycle(t, f, bootcd.Faults{NeverComesBack: true}, 90*time.Second)
		if rep.Verdict != smoke.Fail || !strings.Contains(rep.Reason, "switch to the candidate: the VM did not come back from the reboot") {
			t.Errorf("verdict %s: %s", rep.Verdict, rep.Reason)
		}
	})
	t.Run("booted digest wrong", func(t *testing.T) {
		wrong := "sha256:" + strings.Repeat("e", 64)
		rep, _ := runLifecycle(t, f, bootcd.Faults{WrongDigest: wrong}, 3*time.Minute)
		if rep.Verdict != smoke.Fail || !strings.Contains(rep.Reason, "switch to the candidate: booted "+wrong) {
			t.Errorf("verdict %s: %s", rep.Verdict, rep.Reason)
		}
	})
	t.Run("probe fails after rollback", func(t *testing.T) {
		rep, _ := runLifecycle(t, f, bootcd.Faults{BreakAfterRollback: true}, 90*time.Second)
		if rep.Verdict != smoke.Fail || !strings.Contains(rep.Reason, "rollback: probe http / failed") {
			t.Errorf("verdict %s: %s", rep.Verdict, rep.Reason)
		}
		if rep.SerialTail == "" {
			t.Error("no serial tail in the failed report")
		}
	})
}

// TestProfileUpgradeKeepsDatabaseRows switches a database host from the stand-in profile to another profile's
// database image (the RHEL 9.6 → 10 move of the seed): rows written before are read back after.
func TestProfileUpgradeKeepsDatabaseRows(t *testing.T) {
	requireQEMU(t)
	ctx := t.Context()
	f := buildLifecycleFamily(t)
	// The same layers on another profile: every image differs (profile label and inputs).
	args := []string{"build-all", "--dir", f.dir, "--profile", "standin-next", "--base-image", env.StandinBase(t),
		"--registry", f.ns, "--commit", testCommit, "--run-id", "lcnext", "--trust-key", f.key.pub, "--json"}
	res := env.Run(ctx, append(args, env.BuildahArgs()...)...)
	if res.Err != nil {
		t.Fatalf("build-all standin-next: %v\n%s", res.Err, res.Stderr)
	}
	next, err := report.Parse([]byte(res.Stdout))
	if err != nil {
		t.Fatal(err)
	}
	nextDB, _ := next.Layer("database")
	if s := env.RunEnv(ctx, []string{"IMAGEMODE_KEY_PASSWORD=" + keyPassword}, "sign", "--key", f.key.priv, "--image", nextDB.Ref); s.Err != nil {
		t.Fatalf("sign: %v", s.Err)
	}
	db, _ := f.first.Layer("database")
	probe, err := smoke.NewMariaDB()
	if err != nil {
		t.Fatal(err)
	}
	sshKey, err := guest.NewKey("imagemode-lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	a, err := vm.ParseAccel(accel())
	if err != nil {
		t.Fatal(err)
	}
	host, err := bootcd.Start(ctx, bootcd.Config{
		Registry: registry.New(), SigPolicy: env.SigPolicy, Key: sshKey, GuestPorts: []int{3306}, Accel: a, Work: t.TempDir(),
		Credentials: map[string]string{smoke.CredentialName: probe.Credential()},
		Initial:     bootcd.Deployment{Ref: db.Ref, Digest: db.Digest}, Log: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := host.Close(); err != nil {
			t.Logf("closing: %v", err)
		}
	}()
	rep, err := lifecycle.Run(ctx, lifecycle.Config{
		Machine: host, User: "root", Key: sshKey, Original: db.Digest, Candidate: nextDB.Ref,
		Probes: []smoke.Probe{probe}, Persist: []lifecycle.Persistence{&lifecycle.MariaDBRows{Probe: probe}},
		SkipRollbackUpgrade: true, StepDeadline: 4 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != smoke.Pass {
		t.Fatalf("profile upgrade failed: %s\n%s", rep.Reason, rep.SerialTail)
	}
	last := rep.Steps[len(rep.Steps)-1]
	if last.Booted != nextDB.Digest {
		t.Errorf("booted %s after the profile upgrade, want %s", last.Booted, nextDB.Digest)
	}
}
