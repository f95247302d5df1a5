package ephemeral

import (
	"fmt"
	"strings"

	"github.com/imagemode/imagemode/ci/vm"
)

// ScriptOptions describe an ephemeral boot run inside a container (the Dagger path): the image's root filesystem
// is mounted at Rootfs, and QEMU runs in the foreground as the container's service process.
type ScriptOptions struct {
	Rootfs string
	Work   string
	// VM is the machine; its Kernel, Initrd, Disk and Append are filled in by the script.
	VM vm.Config
	// Accel "auto" tries KVM and lets QEMU fall back to TCG; "kvm" or "tcg" force one.
	Accel vm.Accel
	// SerialPort exposes the serial console on this TCP port (probes read it); 0 writes it to Work/serial.log.
	SerialPort int
}

// Script returns the shell script that prepares the boot exactly as FromDirectory does on a host (the one kernel
// under /usr/lib/modules, mkfs.ext4 -d of the root filesystem, the image's kargs.d appended to BaseCmdline) and
// then execs QEMU.
func Script(o ScriptOptions) (string, error) {
	for _, p := range []string{o.Rootfs, o.Work} {
		if p == "" || strings.ContainsAny(p, " '\"$`\\") {
			return "", fmt.Errorf("unsafe path %q", p)
		}
	}
	c := o.VM
	c.Kernel, c.Initrd, c.Disk, c.Format, c.Snapshot = o.Work+"/vmlinuz", o.Work+"/initramfs.img", o.Work+"/root.raw", "raw", true
	c.Append = "@CMDLINE@"
	serial := "file:" + o.Work + "/serial.log"
	if o.SerialPort != 0 {
		serial = fmt.Sprintf("tcp:0.0.0.0:%d,server=on,wait=off", o.SerialPort)
	}
	var quoted []string
	for _, a := range c.Args(o.Accel, serial, o.Work+"/qmp.sock") {
		if a == "@CMDLINE@" {
			quoted = append(quoted, `"$cmdline"`)
			continue
		}
		quoted = append(quoted, ShellQuote(a))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `set -eu
root=%[1]s
work=%[2]s
mkdir -p "$work"
set -- "$root"/usr/lib/modules/*/vmlinuz
if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then echo "imagemode: expected exactly one /usr/lib/modules/<version>/vmlinuz, found $#" >&2; exit 1; fi
kdir=$(dirname "$1")
cp "$kdir/vmlinuz" "$work/vmlinuz"
cp "$kdir/initramfs.img" "$work/initramfs.img"
kargs=$(cat "$root"/usr/lib/bootc/kargs.d/*.toml 2>/dev/null | sed -n 's/^[[:space:]]*kargs[[:space:]]*=[[:space:]]*\[\(.*\)\].*/\1/p' | tr -d '",' | tr '\n' ' ')
cmdline=$(echo "%[3]s $kargs" | sed 's/[[:space:]]*$//')
size=$(( $(du -sm "$root" | cut -f1) * 5 / 4 + 768 ))
mkfs.ext4 -q -F -L root -d "$root" "$work/root.raw" "${size}M"
exec qemu-system-x86_64 %[4]s
`, o.Rootfs, o.Work, BaseCmdline, strings.Join(quoted, " "))
	return b.String(), nil
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
