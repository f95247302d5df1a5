// Package sbom makes the SPDX 2.3 SBOM of an image (anchore/syft's dpkg and RPM database catalogers over the
// package databases of the image's root filesystem), reads the package list back out of an SBOM and compares two
// of them: what a `bootc upgrade` from one image to another changes on a host.
package sbom

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/anchore/syft/syft/artifact"
	"github.com/anchore/syft/syft/format/spdxjson"
	"github.com/anchore/syft/syft/linux"
	"github.com/anchore/syft/syft/pkg"
	"github.com/anchore/syft/syft/pkg/cataloger/debian"
	"github.com/anchore/syft/syft/pkg/cataloger/redhat"
	syftsbom "github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"
	"github.com/anchore/syft/syft/source/directorysource"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	_ "modernc.org/sqlite" // the RPM database of RHEL 9 and 10 is SQLite (syft opens it by driver name)
)

// PredicateType is the in-toto predicate type of an SPDX document, as cosign names it (`--type spdxjson`).
const PredicateType = "https://spdx.dev/Document"

// Tool names the generator in the SBOM's creation info.
const Tool = "imagemode"

// ErrNoPackageDatabase says an image holds neither a dpkg nor an RPM database.
var ErrNoPackageDatabase = errors.New("no package database (neither /var/lib/dpkg/status nor an RPM database under /usr/lib/sysimage/rpm or /var/lib/rpm)")

// Generate returns the SPDX 2.3 JSON SBOM of img, named name (the image's digest reference). Only the package
// databases and the os-release files are read out of the image's flattened filesystem (a RHEL bootc image is not
// unpacked to disk): the RPM database for RHEL, CentOS and Fedora images, dpkg's for Debian.
func Generate(ctx context.Context, img v1.Image, name, toolVersion string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "imagemode-sbom-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	found, err := extractDatabases(ctx, img, dir)
	if err != nil {
		return nil, fmt.Errorf("reading the package databases of %s: %w", name, err)
	}
	if !found {
		return nil, fmt.Errorf("%s: %w", name, ErrNoPackageDatabase)
	}
	src, err := directorysource.New(directorysource.Config{Path: dir, Base: dir, Alias: source.Alias{Name: name}})
	if err != nil {
		return nil, err
	}
	res, err := src.FileResolver(source.SquashedScope)
	if err != nil {
		return nil, err
	}
	// The two package-database catalogers, called directly: syft's top-level CreateSBOM links every cataloger it
	// has (Java, Go binaries, …), which doubles the CLI's dependencies for nothing an OS image's SBOM needs.
	var pkgs []pkg.Package
	var rels []artifact.Relationship
	for _, c := range []pkg.Cataloger{debian.NewDBCataloger(), redhat.NewDBCataloger()} {
		ps, rs, err := c.Catalog(ctx, res)
		if err != nil {
			return nil, fmt.Errorf("cataloguing the packages of %s (%s): %w", name, c.Name(), err)
		}
		pkgs, rels = append(pkgs, ps...), append(rels, rs...)
	}
	s := syftsbom.SBOM{
		Artifacts:     syftsbom.Artifacts{Packages: pkg.NewCollection(pkgs...), LinuxDistribution: linux.IdentifyRelease(res)},
		Relationships: rels,
		Source:        src.Describe(),
		Descriptor:    syftsbom.Descriptor{Name: Tool, Version: toolVersion},
	}
	enc, err := spdxjson.NewFormatEncoderWithConfig(spdxjson.EncoderConfig{Version: "2.3"})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := enc.Encode(&buf, s); err != nil {
		return nil, fmt.Errorf("encoding the SBOM of %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// wanted says whether a path of the image's root filesystem (no leading slash) is read for the SBOM.
func wanted(p string) bool {
	switch p {
	case "etc/os-release", "usr/lib/os-release", "etc/redhat-release", "etc/debian_version", "etc/system-release",
		"var/lib/dpkg/status", "var/lib/rpm", "usr/lib/sysimage/rpm", "usr/share/rpm":
		return true
	}
	for _, prefix := range []string{"var/lib/dpkg/status.d/", "var/lib/rpm/", "usr/lib/sysimage/rpm/", "usr/share/rpm/"} {
		if strings.HasPrefix(p, prefix) {
			return !strings.HasPrefix(path.Base(p), "__db.") && !strings.HasSuffix(p, ".lock")
		}
	}
	// Debian's licences: /usr/share/doc/<package>/copyright.
	if rest, ok := strings.CutPrefix(p, "usr/share/doc/"); ok {
		pkgName, file, _ := strings.Cut(rest, "/")
		return pkgName != "" && file == "copyright"
	}
	return false
}

// isDatabase says whether p is a package database syft reads.
func isDatabase(p string) bool {
	switch path.Base(p) {
	case "Packages", "Packages.db", "rpmdb.sqlite":
		return strings.Contains(p, "rpm/")
	}
	return p == "var/lib/dpkg/status" || strings.HasPrefix(p, "var/lib/dpkg/status.d/")
}

// extractDatabases writes the wanted files of img's flattened filesystem under dir and says whether a package
// database was among them.
func extractDatabases(ctx context.Context, img v1.Image, dir string) (bool, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	found := false
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return found, nil
		}
		if err != nil {
			return false, err
		}
		p := path.Clean(strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/"))
		if !wanted(p) || strings.HasPrefix(p, "..") {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return false, err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return false, err
			}
		case tar.TypeSymlink:
			// Keep links inside dir: an absolute target is taken relative to the image's root.
			target := h.Linkname
			if path.IsAbs(target) {
				rel, err := filepath.Rel(filepath.Dir(dst), filepath.Join(dir, filepath.FromSlash(target)))
				if err != nil {
					return false, err
				}
				target = rel
			}
			if err := os.Symlink(target, dst); err != nil && !errors.Is(err, os.ErrExist) {
				return false, err
			}
		case tar.TypeReg, tar.TypeLink:
			if h.Typeflag == tar.TypeLink {
				// A hard link to a file extracted before: copy it.
				src := path.Clean(strings.TrimPrefix(strings.TrimPrefix(h.Linkname, "./"), "/"))
				if !wanted(src) {
					continue
				}
				data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(src)))
				if err != nil {
					return false, err
				}
				if err := os.WriteFile(dst, data, 0o644); err != nil {
					return false, err
				}
			} else if err := writeFile(dst, tr); err != nil {
				return false, err
			}
			found = found || isDatabase(p)
		}
	}
}

func writeFile(dst string, r io.Reader) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
