// Package standin builds the stand-in image family the integration tests use where no RHEL or CentOS bootc image
// can be pulled: a bootable Debian 12 root filesystem (systemd, the cloud kernel, Apache, MariaDB, OpenSSH, tmux,
// mkpasswd) shaped like a bootc image — kernel and initramfs under /usr/lib/modules/<kver>/, label containers.bootc=1,
// a stand-in /usr/bin/bootc — pushed as the base image, and Containerfiles of the same shape as containerfiles/
// (tests/standin/containerfiles) that configure it layer by layer.
//
// Packages are installed in the base, disabled, so that building the family needs no network; the layers do what
// the product's layers do with them (enable Apache, move the web root, configure MariaDB, ...).
package standin

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Packages are installed into the stand-in base.
var Packages = []string{
	"systemd-sysv", "udev", "linux-image-cloud-amd64", "initramfs-tools", "apache2", "mariadb-server",
	"sudo", "tmux", "whois", "openssh-server", "iproute2", "ca-certificates",
}

// Suite is the Debian release.
const Suite = "bookworm"

// hooks run inside mmdebstrap after the packages are installed ($1 is the root).
var hooks = []string{
	// bootc layout: the kernel and its initramfs live under /usr/lib/modules/<kver>/.
	`for k in "$1"/boot/vmlinuz-*; do v=${k##*/vmlinuz-}; cp "$k" "$1/usr/lib/modules/$v/vmlinuz"; cp "$1/boot/initrd.img-$v" "$1/usr/lib/modules/$v/initramfs.img"; done`,
	// The layers enable the services, like the product's Containerfiles do.
	`chroot "$1" systemctl disable apache2 mariadb`,
	`chroot "$1" systemctl enable systemd-networkd`,
	// A machine id is made at first boot.
	`rm -f "$1/etc/machine-id" && touch "$1/etc/machine-id"`,
}

// RootfsDir is the folder of files copied over the base (the stand-in bootc, network config).
func RootfsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "rootfs")
}

// ContainerfilesDir is the stand-in family's containerfiles directory.
func ContainerfilesDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "containerfiles")
}

// cacheKey hashes everything that determines the base root filesystem.
func cacheKey() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", Suite, strings.Join(Packages, ","), strings.Join(hooks, "\n"))
	root := RootfsDir()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("reading %q: %w", root, err)
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("reading %q: %w", f, err)
		}
		info, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("reading %q: %w", f, err)
		}
		rel, err := filepath.Rel(root, f)
		if err != nil {
			return "", fmt.Errorf("relative path of %q: %w", f, err)
		}
		fmt.Fprintf(h, "%s %o %d\n", rel, info.Mode().Perm(), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// CacheDir is where the base root filesystem tarball is kept ($IMAGEMODE_CACHE, else the user cache dir).
func CacheDir() (string, error) {
	if d := os.Getenv("IMAGEMODE_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding a cache directory (set IMAGEMODE_CACHE): %w", err)
	}
	return filepath.Join(d, "imagemode"), nil
}

// BaseRootfs returns the path of the base root filesystem tarball, running mmdebstrap (1-3 minutes, needs root and
// Debian's apt repositories) when it is not cached yet. Progress goes to log.
func BaseRootfs(ctx context.Context, log io.Writer) (string, error) {
	key, err := cacheKey()
	if err != nil {
		return "", err
	}
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "standin-base-"+key+".tar")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating %q: %w", dir, err)
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return "", fmt.Errorf("building the stand-in base needs mmdebstrap (apt-get install mmdebstrap): %w", err)
	}
	tmp := out + ".tmp"
	args := []string{"--variant=apt", "--format=tar", "--include=" + strings.Join(Packages, ","), "--skip=output/dev",
		"--customize-hook=sync-in " + RootfsDir() + " /"}
	for _, h := range hooks {
		args = append(args, "--customize-hook="+h)
	}
	args = append(args, Suite, tmp)
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	cmd.Stdout, cmd.Stderr = log, log
	fmt.Fprintf(log, "standin: mmdebstrap %s -> %s\n", Suite, out)
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("mmdebstrap: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", fmt.Errorf("storing %q: %w", out, err)
	}
	return out, nil
}

// PushBase pushes the root filesystem tarball as a single-layer bootc-shaped image to ref and returns its digest.
func PushBase(ctx context.Context, rootfsTar, ref string) (string, error) {
	layer, err := tarball.LayerFromFile(rootfsTar, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return "", fmt.Errorf("reading %q: %w", rootfsTar, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", fmt.Errorf("assembling the base image: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("reading the base configuration: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Labels = map[string]string{
		"containers.bootc":                "1",
		"org.opencontainers.image.title":  "imagemode stand-in base (Debian " + Suite + ")",
		"org.opencontainers.image.vendor": "imagemode tests",
	}
	cfg.Config.Cmd = []string{"/sbin/init"}
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return "", fmt.Errorf("setting the base configuration: %w", err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("parsing %q: %w", ref, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("pushing the stand-in base to %q: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("digest of the stand-in base: %w", err)
	}
	return d.String(), nil
}
