//go:build integration

package tests

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/vm"
	"github.com/imagemode/imagemode/tests/standin"
)

// idleVM starts a QEMU that runs forever: an empty disk, so the firmware keeps looking for something to boot.
func idleVM(t *testing.T, ctx context.Context) *vm.VM {
	t.Helper()
	disk := filepath.Join(t.TempDir(), "empty.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := vm.Start(ctx, vm.Config{Disk: disk, Format: "raw", Snapshot: true, MemoryMB: 128, CPUs: 1}, vm.AccelTCG)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil
}

func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("QEMU (pid %d) still runs %s later", pid, within)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Logf("killing leftover QEMU: %v", err)
	}
}

// TestVMTeardown: no QEMU is left behind after Stop, after the context ends, or after the process that started it
// crashes.
func TestVMTeardown(t *testing.T) {
	requireQEMU(t)
	before := qemuProcesses(t)

	t.Run("stop", func(t *testing.T) {
		v := idleVM(t, t.Context())
		st, err := v.Status(t.Context())
		if err != nil || st != "running" {
			t.Errorf("QMP status = %q, %v", st, err)
		}
		pid := v.Pid()
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
		waitGone(t, pid, 5*time.Second)
		if err := v.Close(); err != nil {
			t.Errorf("a second Close: %v", err)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		v := idleVM(t, ctx)
		pid := v.Pid()
		cancel()
		waitGone(t, pid, 10*time.Second)
		<-v.Exited()
	})

	t.Run("caller crashes", func(t *testing.T) {
		// The test binary re-runs itself as a helper that starts a VM, prints its pid and panics.
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestVMCrashHelper$")
		cmd.Env = append(os.Environ(), "IMAGEMODE_VM_CRASH_HELPER=1")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "QEMU_PID="); ok {
				pid, _ = strconv.Atoi(p)
			}
		}
		if err := cmd.Wait(); err == nil {
			t.Error("the helper did not crash")
		}
		if pid == 0 {
			t.Fatal("the helper did not report a QEMU pid")
		}
		waitGone(t, pid, 5*time.Second)
	})

	if after := qemuProcesses(t); after > before {
		t.Errorf("%d QEMU process(es) left behind", after-before)
	}
}

// TestVMCrashHelper is the helper process of TestVMTeardown/caller_crashes; it does nothing in a normal run.
func TestVMCrashHelper(t *testing.T) {
	if os.Getenv("IMAGEMODE_VM_CRASH_HELPER") == "" {
		return
	}
	v := idleVM(t, t.Context())
	fmt.Printf("QEMU_PID=%d\n", v.Pid())
	panic("the caller crashes with a VM running")
}

// TestAccelAuto boots the stand-in SOE with --accel auto: KVM where it works (GitHub runners), TCG after KVM fails
// to run the guest (these machines), either way a passing verdict; the accel chosen is in the verdict.
func TestAccelAuto(t *testing.T) {
	requireQEMU(t)
	dir := standin.ContainerfilesDir()
	rep := buildFamily(t, dir, "accel")
	l, _ := rep.Layer("soe")
	cache := t.TempDir() // a fresh host memory: auto must find out again
	res := env.RunEnv(t.Context(), []string{"IMAGEMODE_CACHE=" + cache}, "smoke", "--dir", dir, "--image", l.Ref, "--accel", "auto", "--deadline", "180s")
	if res.Err != nil {
		t.Fatalf("smoke --accel auto: %v\n%s\n%s", res.Err, res.Stdout, res.Stderr)
	}
	t.Logf("%s", strings.SplitN(res.Stdout, "\n", 2)[0])
	kvmOpens := false
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		kvmOpens = f.Close() == nil
	}
	// .ci/run says tcg where KVM is known not to run a guest (these machines); GitHub runners' KVM works.
	kvmBroken := os.Getenv("IMAGEMODE_ACCEL") == "tcg"
	switch {
	case !kvmOpens || kvmBroken:
		if !strings.Contains(res.Stdout, ", tcg,") {
			t.Errorf("KVM cannot run guests here, but the verdict does not say tcg:\n%s", res.Stdout)
		}
	default:
		if !strings.Contains(res.Stdout, ", kvm,") {
			t.Errorf("KVM works here, but the verdict does not say kvm:\n%s", res.Stdout)
		}
	}
	if kvmOpens && kvmBroken {
		ents, err := filepath.Glob(filepath.Join(cache, "kvm-broken-*"))
		if err != nil || len(ents) == 0 {
			t.Errorf("the KVM failure was not remembered for this host (%v)", err)
		}
	}
}

// standinKernel extracts the stand-in base's kernel (tests/standin) to a file.
func standinKernel(t *testing.T) string {
	t.Helper()
	var log strings.Builder
	tarPath, err := standin.BaseRootfs(t.Context(), &log)
	if err != nil {
		t.Fatalf("stand-in base: %v\n%s", err, log.String())
	}
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no kernel under boot/ in %s: %v", tarPath, err)
		}
		if !strings.HasPrefix(strings.TrimPrefix(h.Name, "./"), "boot/vmlinuz-") || h.Typeflag != tar.TypeReg {
			continue
		}
		out := filepath.Join(t.TempDir(), "vmlinuz")
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return out
	}
}
