package ephemeral

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// RootFS is read access to an image's root filesystem (Dir: an unpacked image; tests use fakes). Paths are
// slash-separated and relative to the root.
type RootFS interface {
	// Glob returns the files matching pattern (path.Match syntax per element), in any order.
	Glob(ctx context.Context, pattern string) ([]string, error)
	// ReadFile returns a file's content.
	ReadFile(ctx context.Context, name string) ([]byte, error)
}

// Dir is a root filesystem unpacked into a folder of this host.
type Dir string

// Glob implements RootFS.
func (d Dir) Glob(_ context.Context, pattern string) ([]string, error) {
	m, err := fs.Glob(os.DirFS(string(d)), pattern)
	if err != nil {
		return nil, fmt.Errorf("looking for %s: %w", pattern, err)
	}
	var files []string
	for _, p := range m {
		real, err := resolveIn(string(d), p)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(real); err == nil && fi.Mode().IsRegular() {
			files = append(files, p)
		}
	}
	return files, nil
}

// ReadFile implements RootFS; symlinks resolve inside the root.
func (d Dir) ReadFile(_ context.Context, name string) ([]byte, error) {
	p, err := resolveIn(string(d), name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading /%s of the image: %w", name, err)
	}
	return b, nil
}

// resolveIn resolves name inside root as if root were "/", following symlinks, the last element's too.
func resolveIn(root, name string) (string, error) {
	for hops := 0; hops < 40; hops++ {
		p, err := SecureJoin(root, name)
		if err != nil {
			return "", err
		}
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			return p, nil
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", fmt.Errorf("reading the symlink /%s: %w", name, err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			name = target
		} else {
			name = path.Join(path.Dir(filepath.ToSlash(rel)), target)
		}
	}
	return "", fmt.Errorf("too many symlinks resolving /%s", name)
}

// KargsDir is where bootc images keep their kernel arguments (TOML files with kargs = [...]).
const KargsDir = "usr/lib/bootc/kargs.d"

// Arch is the architecture guests run (kargs.d entries with match-architectures apply only when it is listed).
const Arch = "x86_64"

// Layout is what a direct kernel boot of an image needs from its root filesystem.
type Layout struct {
	// KernelVersion is the /usr/lib/modules folder of the image's one kernel.
	KernelVersion string
	// Kernel and Initrd are its vmlinuz and initramfs.img, relative to the root.
	Kernel, Initrd string
	// Kargs are the image's own kernel arguments, from every kargs.d/*.toml in file-name order (as bootc does).
	Kargs []string
}

// Cmdline is the kernel command line of an ephemeral boot: BaseCmdline, then the image's own arguments.
func (l *Layout) Cmdline() string { return Cmdline(l.Kargs) }

// Cmdline appends an image's kernel arguments to BaseCmdline.
func Cmdline(kargs []string) string {
	return strings.TrimSpace(BaseCmdline + " " + strings.Join(kargs, " "))
}

// Inspect finds the image's one kernel and its initramfs under /usr/lib/modules/<version>/, as bootc images ship
// them, and reads its kargs.d. The host (after unpacking) and the Dagger engine (through the container's root
// filesystem) both call it, so both boot a guest the same way.
func Inspect(ctx context.Context, root RootFS) (*Layout, error) {
	kernels, err := root.Glob(ctx, "usr/lib/modules/*/vmlinuz")
	if err != nil {
		return nil, err
	}
	var versions []string
	for _, k := range kernels {
		versions = append(versions, path.Base(path.Dir(k)))
	}
	sort.Strings(versions)
	switch len(versions) {
	case 0:
		return nil, errors.New("the image has no kernel: no /usr/lib/modules/<version>/vmlinuz (not a bootc image?)")
	case 1:
	default:
		return nil, fmt.Errorf("the image has %d kernels (%s): a bootc image ships exactly one", len(versions), strings.Join(versions, ", "))
	}
	kver := versions[0]
	dir := "usr/lib/modules/" + kver
	initrd, err := root.Glob(ctx, dir+"/initramfs.img")
	if err != nil {
		return nil, err
	}
	if len(initrd) == 0 {
		return nil, fmt.Errorf("the image's kernel %s has no /%s/initramfs.img", kver, dir)
	}
	l := &Layout{KernelVersion: kver, Kernel: dir + "/vmlinuz", Initrd: dir + "/initramfs.img"}
	files, err := root.Glob(ctx, KargsDir+"/*.toml")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := root.ReadFile(ctx, f)
		if err != nil {
			return nil, err
		}
		kargs, err := ParseKargs(data, Arch)
		if err != nil {
			return nil, fmt.Errorf("/%s: %w", f, err)
		}
		l.Kargs = append(l.Kargs, kargs...)
	}
	return l, nil
}

// kargsFile is the format of a bootc kargs.d file.
type kargsFile struct {
	Kargs              []string `toml:"kargs"`
	MatchArchitectures []string `toml:"match-architectures"`
}

// ParseKargs reads one kargs.d file: its kargs, or none when match-architectures is set and does not list arch.
// Arguments are kept exactly as written (console=ttyS0,115200n8 keeps its comma).
func ParseKargs(data []byte, arch string) ([]string, error) {
	var f kargsFile
	if err := toml.Unmarshal(data, &f); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, fmt.Errorf("line %d, column %d: %s", row, col, de.Error())
		}
		return nil, fmt.Errorf("not a kargs.d file: %w", err)
	}
	if len(f.MatchArchitectures) > 0 && !slices.Contains(f.MatchArchitectures, arch) {
		return nil, nil
	}
	for _, k := range f.Kargs {
		if k == "" || strings.ContainsAny(k, " \t\n") {
			return nil, fmt.Errorf("kernel argument %s: empty or with white space", strconv.Quote(k))
		}
	}
	return f.Kargs, nil
}

// DiskCommand is the one way a root disk is made from a root filesystem, on the host and in a Dagger container:
// Measure runs first and sizes the disk, Make writes it with mkfs.ext4 -d (no loop mounts, no privileges beyond
// file ownership).
type DiskCommand struct {
	// Root is the root filesystem folder; Disk the raw disk file to write.
	Root, Disk string
	// Label is the file system label (default "root").
	Label string
}

// Measure returns the command printing the bytes the tree uses (du; the first field of its output).
func (c DiskCommand) Measure() []string { return []string{"du", "-s", "-B1", c.Root} }

// ParseMeasure reads the output of Measure.
func ParseMeasure(out string) (int64, error) {
	fields := strings.Fields(out)
	if len(fields) == 0 {
		return 0, fmt.Errorf("measuring the root filesystem: no output from du")
	}
	n, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("measuring the root filesystem: du printed %q", strings.TrimSpace(out))
	}
	return n, nil
}

// DiskMiB is the size of a root disk for a tree using used bytes: a quarter more plus 768 MiB, room for the guest
// to write (journal, MariaDB's files).
func DiskMiB(used int64) int64 { return used/(1<<20)*5/4 + 768 }

// Make returns the mkfs.ext4 command writing the disk of the given size.
func (c DiskCommand) Make(mib int64) []string {
	label := c.Label
	if label == "" {
		label = "root"
	}
	return []string{"mkfs.ext4", "-q", "-F", "-L", label, "-d", c.Root, c.Disk, strconv.FormatInt(mib, 10) + "M"}
}

// hostPath turns a RootFS path into a path under a host folder.
func hostPath(root, rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }
