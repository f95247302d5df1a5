package vm

import (
	"strings"
	"testing"

	"github.com/imagemode/imagemode/ci/internal/golden"
)

func TestArgsEphemeral(t *testing.T) {
	c := Config{
		Kernel: "/w/vmlinuz", Initrd: "/w/initramfs.img", Append: "root=/dev/vda rw console=ttyS0,115200n8",
		Disk: "/w/root.raw", Format: "raw", Snapshot: true, NoReboot: true, MemoryMB: 2048, CPUs: 2,
		Forwards:    []Forward{{Guest: 80, Host: 18080}, {Guest: 3306, Host: 13306}, {Guest: 22, Host: 2222, Bind: "0.0.0.0"}},
		Credentials: map[string]string{"imagemode.mariadb-user": "smoke:abc", "a.b": "x,y"},
	}
	golden.Check(t, "ephemeral-tcg.args", []byte(strings.Join(c.Args(AccelTCG, "file:/w/serial.log", "unix:/w/qmp.sock,server=on,wait=off"), "\n")+"\n"))
}

func TestArgsDisk(t *testing.T) {
	c := Config{Disk: "/w/disk.qcow2", Format: "qcow2"}
	golden.Check(t, "disk-kvm.args", []byte(strings.Join(c.Args(AccelKVM, "file:/w/serial.log", "unix:/w/qmp.sock,server=on,wait=off"), "\n")+"\n"))
	// Boot resolves auto; Args never asks QEMU for its own fallback (-accel kvm -accel tcg falls back only when KVM
	// does not initialise, not when the guest then dies under it).
	if a := strings.Join(c.Args(AccelAuto, "file:s", "unix:q"), " "); strings.Contains(a, "kvm") || !strings.Contains(a, "-accel tcg") {
		t.Errorf("Args(auto) = %s", a)
	}
}

func TestParseAccel(t *testing.T) {
	for in, want := range map[string]Accel{"": AccelAuto, "auto": AccelAuto, "kvm": AccelKVM, "tcg": AccelTCG} {
		got, err := ParseAccel(in)
		if err != nil || got != want {
			t.Errorf("ParseAccel(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseAccel("hvf"); err == nil || !strings.Contains(err.Error(), "--accel \"hvf\"") {
		t.Errorf("ParseAccel(hvf): %v", err)
	}
}

func TestTail(t *testing.T) {
	if got := Tail("a\nb\nc\nd\n", 2); got != "c\nd" {
		t.Errorf("Tail = %q", got)
	}
	w := &tailWriter{max: 2}
	for _, s := range []string{"one\ntw", "o\nthree\nfo"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.String(); got != "two\nthree\nfo" {
		t.Errorf("tailWriter = %q", got)
	}
}

func TestPool(t *testing.T) {
	p := NewPool(1)
	done := make(chan struct{})
	release, ok := p.Acquire(done)
	if !ok {
		t.Fatal("first acquire failed")
	}
	close(done)
	if _, ok := p.Acquire(done); ok {
		t.Error("a second slot was granted from a pool of one")
	}
	release()
	if r, ok := p.Acquire(make(chan struct{})); !ok {
		t.Error("the released slot was not granted")
	} else {
		r()
	}
}
