//go:build module

package module

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The module builds its CLI in docker.io/library/golang:1.25-bookworm. The development kit's engine mirrors
// docker.io to its own registry ($ENGINE_REGISTRY), which holds only what was pushed to it (there is no route to
// Docker Hub here): the tests push an equivalent image there when it is missing — the kit's Debian bookworm with
// the Go 1.25 toolchain from the Go module proxy and this machine's CA bundle. On GitHub the real image is pulled.
const (
	goToolchain = "golang.org/toolchain@v0.0.1-go1.25.14.linux-amd64"
	goImage     = "library/golang:1.25-bookworm"
	debianImage = "library/debian:bookworm-slim"
)

func ensureGolangImage(ctx context.Context, log io.Writer) error {
	mirror := os.Getenv("ENGINE_REGISTRY")
	if mirror == "" {
		return nil
	}
	dst, err := name.ParseReference(mirror+"/"+goImage, name.Insecure)
	if err != nil {
		return err
	}
	if _, err := remote.Head(dst, remote.WithContext(ctx)); err == nil {
		return nil
	}
	src, err := name.ParseReference(mirror+"/"+debianImage, name.Insecure)
	if err != nil {
		return err
	}
	base, err := remote.Image(src, remote.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("reading the kit's %s (engine.sh up pushes it): %w", src, err)
	}
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", goToolchain).Output()
	if err != nil {
		return fmt.Errorf("go mod download %s: %w", goToolchain, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download %s: no directory in %q", goToolchain, out)
	}
	fmt.Fprintf(log, "module tests: pushing %s (Debian bookworm + %s)\n", dst, goToolchain)
	f, err := os.CreateTemp("", "golang-layer-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := writeGoLayer(f, mod.Dir); err != nil {
		f.Close()
		return fmt.Errorf("writing the Go layer: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromFile(f.Name())
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg := cf.Config.DeepCopy()
	cfg.Env = []string{"PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"GOPATH=/go", "GOLANG_VERSION=1.25.14"}
	if img, err = mutate.Config(img, *cfg); err != nil {
		return err
	}
	if err := remote.Write(dst, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("pushing %s: %w", dst, err)
	}
	return nil
}

// writeGoLayer writes a layer with the toolchain at /usr/local/go and the host's CA bundle.
func writeGoLayer(w io.Writer, goroot string) error {
	tw := tar.NewWriter(w)
	dir := func(p string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755})
	}
	for _, d := range []string{"usr", "usr/local", "usr/local/go", "go", "go/bin", "etc", "etc/ssl", "etc/ssl/certs"} {
		if err := dir(d); err != nil {
			return err
		}
	}
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Size: int64(len(ca))}); err != nil {
		return err
	}
	if _, err := tw.Write(ca); err != nil {
		return err
	}
	err = filepath.WalkDir(goroot, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == goroot {
			return err
		}
		rel, err := filepath.Rel(goroot, p)
		if err != nil {
			return err
		}
		target := "usr/local/go/" + filepath.ToSlash(rel)
		if d.IsDir() {
			return dir(target)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := int64(0o644)
		if info.Mode()&0o111 != 0 || strings.Contains(target, "/bin/") || strings.Contains(target, "/pkg/tool/") {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: target, Mode: mode, Size: info.Size()}); err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
