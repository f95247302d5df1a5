// Package ephemeral turns a bootc image into something QEMU boots directly, without bootc-image-builder: the
// image's own kernel and initramfs from /usr/lib/modules/<kver>/ and an ext4 root filesystem made from the image's
// flattened root filesystem with `mkfs.ext4 -d` (no loop mounts, no privileges beyond file ownership). The kernel
// command line roots the guest on that disk, sends the console to the serial port, sets SELinux permissive (labels
// do not survive the copy) and panics to a stop, then appends the image's own /usr/lib/bootc/kargs.d arguments.
package ephemeral

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagemode/imagemode/ci/registry"
)

// BaseCmdline roots the guest on the virtio disk made from the image, with its console on the serial port.
//
// It masks the serial getty: a getty is a Type=idle service, which waits at most 5 s for the boot jobs to finish;
// when boot is slower (TCG guests sharing a CPU), it starts anyway and systemd then turns its own console output
// off for good, so the "Reached target multi-user.target" line the smoke test waits for would never be printed.
// Test boots need no login prompt on the console (probes use forwarded ports and SSH).
//
// A kernel that panics waits 5 s before it reboots (panic=5), and QEMU, run with -no-reboot, exits then: the
// console keeps the panic (under an engine it is read from QEMU's memory a few times a second, and what QEMU
// holds when it exits is gone), and the smoke test sees "Kernel panic" there and fails at once anyway.
const BaseCmdline = "root=/dev/vda rw console=ttyS0,115200n8 enforcing=0 panic=5 systemd.mask=serial-getty@ttyS0.service"

// Boot is a prepared ephemeral boot.
type Boot struct {
	// Dir holds the files below; Cleanup removes it.
	Dir    string
	Disk   string
	Kernel string
	Initrd string
	// KernelVersion is the /usr/lib/modules folder the kernel came from.
	KernelVersion string
	// Kargs are the image's own kernel arguments (kargs.d), appended after BaseCmdline.
	Kargs []string
	// EtcSums are the SHA-256 of the image's regular files under /etc (path → hex): what a deployment's /etc
	// looks like before local changes, to tell those changes apart (bootc's 3-way /etc merge).
	EtcSums map[string]string
}

// Cmdline is the kernel command line for the boot.
func (b *Boot) Cmdline() string { return Cmdline(b.Kargs) }

// Cleanup removes the boot's files.
func (b *Boot) Cleanup() error {
	if err := os.RemoveAll(b.Dir); err != nil {
		return fmt.Errorf("removing %s: %w", b.Dir, err)
	}
	return nil
}

// File is an extra file written into the root filesystem (e.g. a per-run SSH key for root).
type File struct {
	Path    string
	Content []byte
	Mode    fs.FileMode
	UID     int
	GID     int
}

// Options tune a preparation.
type Options struct {
	// Extra files written into the root filesystem.
	Extra []File
	// VarDisk, when set and the file does not exist yet, is made from the image's /var (ext4 labelled VarLabel):
	// a persistent /var for hosts that live through several deployments.
	VarDisk  string
	VarLabel string
}

// FromImage pulls ref with go-containerregistry, flattens it and prepares the boot in a new folder under workDir.
func FromImage(ctx context.Context, reg *registry.Client, ref, workDir string, extra ...File) (*Boot, error) {
	return Prepare(ctx, reg, ref, workDir, Options{Extra: extra})
}

// Prepare is FromImage with options.
func Prepare(ctx context.Context, reg *registry.Client, ref, workDir string, o Options) (*Boot, error) {
	r, err := registry.ParseRef(ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, reg.RemoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("pulling %q: %w", ref, err)
	}
	dir, err := os.MkdirTemp(workDir, "ephemeral-")
	if err != nil {
		return nil, fmt.Errorf("creating a work folder: %w", err)
	}
	root := filepath.Join(dir, "rootfs")
	rc := mutate.Extract(img)
	err = Untar(rc, root)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("unpacking %q: %w", ref, err)
	}
	b, err := prepareDir(ctx, root, dir, o)
	if rerr := os.RemoveAll(root); err == nil && rerr != nil {
		err = fmt.Errorf("removing the unpacked root filesystem: %w", rerr)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

// FromDirectory prepares a boot from an unpacked root filesystem (in Dagger: Container.Rootfs() mounted into the
// QEMU container). The kernel, initramfs and disk are written to outDir.
func FromDirectory(ctx context.Context, root, outDir string, extra ...File) (*Boot, error) {
	return prepareDir(ctx, root, outDir, Options{Extra: extra})
}

func prepareDir(ctx context.Context, root, outDir string, o Options) (*Boot, error) {
	lay, err := Inspect(ctx, Dir(root))
	if err != nil {
		return nil, err
	}
	b := &Boot{Dir: outDir, KernelVersion: lay.KernelVersion, Kargs: lay.Kargs,
		Kernel: filepath.Join(outDir, "vmlinuz"), Initrd: filepath.Join(outDir, "initramfs.img"), Disk: filepath.Join(outDir, "root.raw")}
	if err := copyFile(hostPath(root, lay.Kernel), b.Kernel); err != nil {
		return nil, err
	}
	if err := copyFile(hostPath(root, lay.Initrd), b.Initrd); err != nil {
		return nil, err
	}
	if b.EtcSums, err = Sums(filepath.Join(root, "etc")); err != nil {
		return nil, err
	}
	for _, f := range o.Extra {
		if err := writeExtra(root, f); err != nil {
			return nil, err
		}
	}
	if o.VarDisk != "" {
		if _, err := os.Stat(o.VarDisk); errors.Is(err, fs.ErrNotExist) {
			label := o.VarLabel
			if label == "" {
				label = "var"
			}
			if _, err := run(ctx, DiskCommand{Root: filepath.Join(root, "var"), Disk: o.VarDisk, Label: label}.Make(2048)); err != nil {
				return nil, fmt.Errorf("making the /var disk: %w", err)
			}
		}
	}
	dc := DiskCommand{Root: root, Disk: b.Disk}
	out, err := run(ctx, dc.Measure())
	if err != nil {
		return nil, err
	}
	used, err := ParseMeasure(out)
	if err != nil {
		return nil, err
	}
	if _, err := run(ctx, dc.Make(DiskMiB(used))); err != nil {
		return nil, fmt.Errorf("making the root disk (apt-get install e2fsprogs): %w", err)
	}
	return b, nil
}

// run runs a command of this host and returns its standard output.
func run(ctx context.Context, argv []string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", argv[0], err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func writeExtra(root string, f File) error {
	p, err := SecureJoin(root, f.Path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", path.Dir(f.Path), err)
	}
	mode := f.Mode
	if mode == 0 {
		mode = 0o644
	}
	if err := os.WriteFile(p, f.Content, mode); err != nil {
		return fmt.Errorf("writing %s: %w", f.Path, err)
	}
	if err := os.Lchown(p, f.UID, f.GID); err != nil {
		return fmt.Errorf("chown %s: %w", f.Path, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("reading %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	return nil
}

// Sums returns the SHA-256 of every regular file under dir (relative path → hex); a missing dir has none.
func Sums(dir string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return fs.SkipAll
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hashing %s: %w", dir, err)
	}
	return out, nil
}

// SecureJoin resolves name inside root as if root were "/", following symlinks without ever leaving root.
func SecureJoin(root, name string) (string, error) {
	parts := strings.Split(path.Clean("/"+filepath.ToSlash(name)), "/")
	cur := root
	hops := 0
	for i := 0; i < len(parts); i++ {
		p := parts[i]
		if p == "" || p == "." {
			continue
		}
		if p == ".." {
			if cur != root {
				cur = filepath.Dir(cur)
			}
			continue
		}
		next := filepath.Join(cur, p)
		fi, err := os.Lstat(next)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 || i == len(parts)-1 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("too many symlinks resolving %s", name)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", fmt.Errorf("reading the symlink %s: %w", next, err)
		}
		rest := parts[i+1:]
		if path.IsAbs(target) {
			cur = root
		}
		parts = append(strings.Split(target, "/"), rest...)
		i = -1
	}
	return cur, nil
}

// Untar unpacks a (flattened) image tar stream into dir, keeping owners, modes, symlinks, hard links and device
// nodes. It must run as root to keep ownership. Extended attributes (SELinux labels, file capabilities) are not
// kept: guests boot with SELinux permissive.
func Untar(r io.Reader, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var dirs []dirMode
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the image: %w", err)
		}
		name := path.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		parent, err := SecureJoin(dir, path.Dir(name))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", path.Dir(name), err)
		}
		target := filepath.Join(parent, path.Base(name))
		mode := fs.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("creating %s: %w", name, err)
			}
			dirs = append(dirs, dirMode{target, fs.FileMode(h.Mode)})
		case tar.TypeReg:
			if err := removeExisting(target); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return fmt.Errorf("creating %s: %w", name, err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return fmt.Errorf("writing %s: %w", name, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("writing %s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := removeExisting(target); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return fmt.Errorf("creating the symlink %s: %w", name, err)
			}
		case tar.TypeLink:
			src, err := SecureJoin(dir, h.Linkname)
			if err != nil {
				return err
			}
			if err := removeExisting(target); err != nil {
				return err
			}
			if err := os.Link(src, target); err != nil {
				return fmt.Errorf("creating the hard link %s: %w", name, err)
			}
			continue
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			if err := removeExisting(target); err != nil {
				return err
			}
			kind := map[byte]uint32{tar.TypeChar: syscall.S_IFCHR, tar.TypeBlock: syscall.S_IFBLK, tar.TypeFifo: syscall.S_IFIFO}[h.Typeflag]
			dev := int((h.Devmajor << 8) | (h.Devminor & 0xff) | ((h.Devminor &^ 0xff) << 12))
			if err := syscall.Mknod(target, kind|uint32(mode), dev); err != nil {
				return fmt.Errorf("creating the device %s: %w", name, err)
			}
		default:
			continue
		}
		if err := os.Lchown(target, h.Uid, h.Gid); err != nil {
			return fmt.Errorf("setting the owner of %s (unpacking needs root): %w", name, err)
		}
		if h.Typeflag != tar.TypeSymlink && h.Typeflag != tar.TypeDir {
			// After chown: chown clears set-uid bits.
			if err := os.Chmod(target, fileMode(h)); err != nil {
				return fmt.Errorf("setting the mode of %s: %w", name, err)
			}
		}
	}
	// Directory modes last, deepest first, so that read-only directories do not block their own contents.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode.Perm()|specialBits(dirs[i].mode)); err != nil {
			return fmt.Errorf("setting the mode of %s: %w", dirs[i].path, err)
		}
	}
	return nil
}

func fileMode(h *tar.Header) fs.FileMode {
	m := fs.FileMode(h.Mode)
	return m.Perm() | specialBits(m)
}

func specialBits(m fs.FileMode) fs.FileMode {
	// tar modes carry the set-uid, set-gid and sticky bits as octal 04000, 02000, 01000.
	raw := uint32(m)
	var out fs.FileMode
	if raw&0o4000 != 0 {
		out |= fs.ModeSetuid
	}
	if raw&0o2000 != 0 {
		out |= fs.ModeSetgid
	}
	if raw&0o1000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}

func removeExisting(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking %s: %w", p, err)
	}
	if fi.IsDir() {
		return nil
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("replacing %s: %w", p, err)
	}
	return nil
}
