package ephemeral

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRoot makes a root filesystem with kernels of the given versions and kargs.d files (name → content).
func fakeRoot(t *testing.T, kernels []string, kargs map[string]string) string {
	t.Helper()
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range kernels {
		write("usr/lib/modules/"+k+"/vmlinuz", "kernel "+k)
		write("usr/lib/modules/"+k+"/initramfs.img", "initrd "+k)
	}
	for name, c := range kargs {
		write(KargsDir+"/"+name, c)
	}
	return root
}

// TestInspectProductKargs reads the product's own kargs.d file: the serial console argument keeps its comma and
// comes last, so the system console is the serial port the smoke test reads (the engine's shell parser once made
// it console=ttyS0115200n8 and every verdict failed).
func TestInspectProductKargs(t *testing.T) {
	for _, src := range []string{"../../containerfiles/soe/files", "../../tests/standin/containerfiles/soe/files"} {
		real, err := os.ReadFile(filepath.Join(src, KargsDir, "10-imagemode-console.toml"))
		if err != nil {
			t.Fatal(err)
		}
		root := fakeRoot(t, []string{"6.12.0-55.el10.x86_64"}, map[string]string{"10-imagemode-console.toml": string(real)})
		l, err := Inspect(t.Context(), Dir(root))
		if err != nil {
			t.Fatal(err)
		}
		cmd := l.Cmdline()
		if !strings.HasSuffix(cmd, " console=tty0 console=ttyS0,115200n8") {
			t.Errorf("%s: cmdline %q does not end with the image's serial console", src, cmd)
		}
		fields := strings.Fields(cmd)
		var last string
		for _, f := range fields {
			if strings.HasPrefix(f, "console=") {
				last = f
			}
		}
		if last != "console=ttyS0,115200n8" {
			t.Errorf("%s: the last console= is %q", src, last)
		}
		if l.Kernel != "usr/lib/modules/6.12.0-55.el10.x86_64/vmlinuz" || l.Initrd != "usr/lib/modules/6.12.0-55.el10.x86_64/initramfs.img" {
			t.Errorf("kernel %q, initrd %q", l.Kernel, l.Initrd)
		}
	}
}

func TestInspectKargsOrderAndArchitectures(t *testing.T) {
	root := fakeRoot(t, []string{"6.1"}, map[string]string{
		"20-b.toml":     "kargs = [\n  \"b=1\",\n  \"b2=x,y\",\n]\n",
		"10-a.toml":     `kargs = ["a"]`,
		"30-arm.toml":   "kargs = [\"arm-only\"]\nmatch-architectures = [\"aarch64\"]\n",
		"40-x86.toml":   "kargs = [\"x86\"]\nmatch-architectures = [\"x86_64\", \"aarch64\"]\n",
		"50-other.conf": `kargs = ["ignored"]`,
	})
	l, err := Inspect(t.Context(), Dir(root))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(l.Kargs, " "); got != "a b=1 b2=x,y x86" {
		t.Errorf("kargs %q", got)
	}
}

func TestInspectErrors(t *testing.T) {
	cases := []struct {
		name    string
		kernels []string
		kargs   map[string]string
		want    string
	}{
		{"no kernel", nil, nil, "no /usr/lib/modules/<version>/vmlinuz"},
		{"two kernels", []string{"6.1", "6.2"}, nil, "2 kernels (6.1, 6.2)"},
		{"bad toml", []string{"6.1"}, map[string]string{"10-x.toml": "kargs = [\"a\"\n"}, "/usr/lib/bootc/kargs.d/10-x.toml: line"},
		{"space", []string{"6.1"}, map[string]string{"10-x.toml": `kargs = ["a b"]`}, `kernel argument "a b"`},
	}
	for _, c := range cases {
		_, err := Inspect(t.Context(), Dir(fakeRoot(t, c.kernels, c.kargs)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want %q", c.name, err, c.want)
		}
	}
	root := fakeRoot(t, []string{"6.1"}, nil)
	if err := os.Remove(filepath.Join(root, "usr/lib/modules/6.1/initramfs.img")); err != nil {
		t.Fatal(err)
	}
	if _, err := Inspect(t.Context(), Dir(root)); err == nil || !strings.Contains(err.Error(), "initramfs.img") {
		t.Errorf("no initramfs: %v", err)
	}
}

// TestDirStaysInRoot: a symlink in the image never makes the host read outside the root.
func TestDirStaysInRoot(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret.toml")
	if err := os.WriteFile(outside, []byte(`kargs = ["leak"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	root := fakeRoot(t, []string{"6.1"}, nil)
	if err := os.MkdirAll(filepath.Join(root, KargsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, KargsDir, "10-link.toml")); err != nil {
		t.Fatal(err)
	}
	l, err := Inspect(t.Context(), Dir(root))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Kargs) != 0 {
		t.Errorf("kargs %v read through a symlink out of the root", l.Kargs)
	}
}

// TestDiskCommands makes a real disk with the commands the engine runs too.
func TestDiskCommands(t *testing.T) {
	root := fakeRoot(t, []string{"6.1"}, nil)
	dc := DiskCommand{Root: root, Disk: filepath.Join(t.TempDir(), "root.raw")}
	out, err := run(t.Context(), dc.Measure())
	if err != nil {
		t.Fatal(err)
	}
	used, err := ParseMeasure(out)
	if err != nil || used <= 0 {
		t.Fatalf("ParseMeasure(%q) = %d, %v", out, used, err)
	}
	if _, err := run(t.Context(), dc.Make(DiskMiB(used))); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dc.Disk)
	if err != nil || fi.Size() != DiskMiB(used)<<20 {
		t.Errorf("disk %v, %v; want %d MiB", fi, err, DiskMiB(used))
	}
	for _, bad := range []string{"", "x /r", "-1\t/r"} {
		if _, err := ParseMeasure(bad); err == nil {
			t.Errorf("ParseMeasure(%q) accepted", bad)
		}
	}
}
