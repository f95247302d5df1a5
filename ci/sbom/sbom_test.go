package sbom

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type entry struct {
	name, body, link string
}

func layer(t *testing.T, files ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}
		if f.link != "" {
			h = &tar.Header{Name: f.name, Linkname: f.link, Typeflag: tar.TypeSymlink}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func image(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func dpkgEntry(name, version string) string {
	return "Package: " + name + "\nStatus: install ok installed\nPriority: optional\nSection: web\nInstalled-Size: 100\n" +
		"Maintainer: Debian <debian@example.org>\nArchitecture: amd64\nVersion: " + version + "\nDescription: " + name + "\n\n"
}

const osRelease = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n"

// The SBOM lists what the flattened filesystem's dpkg database says: the upper layer's status file replaces the
// lower one's, and the files nobody asked for (a large /usr/bin) are not read.
func TestGenerateReadsTheFlattenedDpkgDatabase(t *testing.T) {
	base := layer(t,
		entry{name: "usr/lib/os-release", body: osRelease},
		entry{name: "etc/os-release", link: "../usr/lib/os-release"},
		entry{name: "var/lib/dpkg/status", body: dpkgEntry("libc6", "2.36-9+deb12u10") + dpkgEntry("apache2", "2.4.62-1~deb12u2")},
		entry{name: "usr/bin/big", body: strings.Repeat("x", 1<<20)},
	)
	upper := layer(t,
		entry{name: "var/lib/dpkg/status", body: dpkgEntry("libc6", "2.36-9+deb12u10") + dpkgEntry("apache2", "2.4.65-1~deb12u1") +
			dpkgEntry("mariadb-server", "1:10.11.11-0+deb12u1")},
		entry{name: "usr/share/doc/apache2/copyright", body: "Files: *\nLicense: Apache-2.0\n"},
	)
	doc, err := Generate(t.Context(), image(t, base, upper), "registry.example/httpd@sha256:"+strings.Repeat("a", 64), "test")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		SPDXVersion  string `json:"spdxVersion"`
		Name         string `json:"name"`
		CreationInfo struct {
			Creators []string `json:"creators"`
		} `json:"creationInfo"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	if d.SPDXVersion != "SPDX-2.3" {
		t.Errorf("spdxVersion %q, want SPDX-2.3", d.SPDXVersion)
	}
	if !strings.Contains(d.Name, "registry.example/httpd@sha256:") {
		t.Errorf("document name %q does not name the image", d.Name)
	}
	if !strings.Contains(strings.Join(d.CreationInfo.Creators, " "), "Tool: imagemode-test") {
		t.Errorf("creators %v do not name imagemode", d.CreationInfo.Creators)
	}
	if bytes.Contains(doc, []byte("imagemode-sbom-")) {
		t.Errorf("the SBOM names the temporary directory it was read from:\n%s", doc)
	}
	pkgs, err := Packages(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := []Package{
		{Type: "deb", Name: "apache2", Version: "2.4.65-1~deb12u1", Arch: "amd64"},
		{Type: "deb", Name: "libc6", Version: "2.36-9+deb12u10", Arch: "amd64"},
		{Type: "deb", Name: "mariadb-server", Version: "1:10.11.11-0+deb12u1", Arch: "amd64"},
	}
	if len(pkgs) != len(want) {
		t.Fatalf("packages %+v, want %+v", pkgs, want)
	}
	for i := range want {
		if pkgs[i] != want[i] {
			t.Errorf("package %d: %+v, want %+v", i, pkgs[i], want[i])
		}
	}
	if !bytes.Contains(doc, []byte("pkg:deb/debian/apache2@2.4.65-1~deb12u1?arch=amd64")) {
		t.Errorf("no Debian package URL for apache2 in\n%s", doc)
	}
	if !bytes.Contains(doc, []byte("Apache-2.0")) {
		t.Errorf("apache2's licence (from its copyright file) is missing")
	}
}

func TestGenerateRefusesAnImageWithoutPackageDatabase(t *testing.T) {
	_, err := Generate(t.Context(), image(t, layer(t, entry{name: "etc/os-release", body: osRelease})), "registry.example/x@sha256:"+strings.Repeat("b", 64), "test")
	if !errors.Is(err, ErrNoPackageDatabase) || !strings.Contains(err.Error(), "registry.example/x@sha256:") {
		t.Fatalf("err = %v, want ErrNoPackageDatabase naming the image", err)
	}
}

func TestGenerateIgnoresADeletedDatabase(t *testing.T) {
	img := image(t,
		layer(t, entry{name: "var/lib/dpkg/status", body: dpkgEntry("apache2", "2.4.62-1")}),
		layer(t, entry{name: "var/lib/dpkg/.wh.status"}),
	)
	if _, err := Generate(t.Context(), img, "registry.example/x@sha256:"+strings.Repeat("c", 64), "test"); !errors.Is(err, ErrNoPackageDatabase) {
		t.Fatalf("err = %v, want ErrNoPackageDatabase (the status file is deleted in the upper layer)", err)
	}
}

func TestPackagesRefusesWhatIsNotSPDX(t *testing.T) {
	for _, in := range []string{`{"bomFormat":"CycloneDX"}`, `not json`, `{"spdxVersion":"SPDX-3.0"}`} {
		if _, err := Packages([]byte(in)); err == nil {
			t.Errorf("Packages(%s) accepted it", in)
		}
	}
}

func TestFromPURL(t *testing.T) {
	for in, want := range map[string]Package{
		"pkg:rpm/redhat/bash@5.1.8-9.el9?arch=x86_64&distro=rhel-9.6":           {Type: "rpm", Name: "bash", Version: "5.1.8-9.el9", Arch: "x86_64"},
		"pkg:rpm/redhat/shadow-utils@4.9-12.el9?arch=x86_64&epoch=2&upstream=x": {Type: "rpm", Name: "shadow-utils", Version: "2:4.9-12.el9", Arch: "x86_64"},
		"pkg:deb/debian/libstdc%2B%2B6@12.2.0-14%2Bdeb12u1?arch=amd64":          {Type: "deb", Name: "libstdc++6", Version: "12.2.0-14+deb12u1", Arch: "amd64"},
		"pkg:deb/debian/tzdata@2025b-0%2Bdeb12u1?arch=all&distro=debian-12":     {Type: "deb", Name: "tzdata", Version: "2025b-0+deb12u1", Arch: "all"},
	} {
		got, ok := fromPURL(in)
		if !ok || got != want {
			t.Errorf("fromPURL(%q) = %+v, %v; want %+v", in, got, ok, want)
		}
	}
	for _, in := range []string{"pkg:golang/github.com/x/y@v1", "cpe:2.3:a:x", "pkg:rpm"} {
		if _, ok := fromPURL(in); ok {
			t.Errorf("fromPURL(%q) took it as an OS package", in)
		}
	}
}

func TestDiff(t *testing.T) {
	old := []Package{
		{Type: "rpm", Name: "bash", Version: "5.1.8-6.el9", Arch: "x86_64"},
		{Type: "rpm", Name: "glibc", Version: "2.34-100.el9", Arch: "x86_64"},
		{Type: "rpm", Name: "glibc", Version: "2.34-100.el9", Arch: "i686"},
		{Type: "rpm", Name: "httpd", Version: "2.4.57-8.el9", Arch: "x86_64"},
		{Type: "rpm", Name: "kernel", Version: "5.14.0-570.el9", Arch: "x86_64"},
	}
	new := []Package{
		{Type: "rpm", Name: "bash", Version: "5.1.8-6.el9", Arch: "x86_64"},
		{Type: "rpm", Name: "glibc", Version: "2.34-125.el9", Arch: "x86_64"},
		{Type: "rpm", Name: "httpd", Version: "2.4.57-5.el9", Arch: "x86_64"},
		{Type: "rpm", Name: "kernel", Version: "6.12.0-55.el10", Arch: "x86_64"},
		{Type: "rpm", Name: "mod_ssl", Version: "1:2.4.57-8.el9", Arch: "x86_64"},
	}
	got := Diff(old, new)
	want := []Change{
		{Kind: Removed, Type: "rpm", Name: "glibc", Arch: "i686", From: "2.34-100.el9"},
		{Kind: Upgraded, Type: "rpm", Name: "glibc", Arch: "x86_64", From: "2.34-100.el9", To: "2.34-125.el9"},
		{Kind: Downgraded, Type: "rpm", Name: "httpd", Arch: "x86_64", From: "2.4.57-8.el9", To: "2.4.57-5.el9"},
		{Kind: Upgraded, Type: "rpm", Name: "kernel", Arch: "x86_64", From: "5.14.0-570.el9", To: "6.12.0-55.el10"},
		{Kind: Added, Type: "rpm", Name: "mod_ssl", Arch: "x86_64", To: "1:2.4.57-8.el9"},
	}
	if len(got) != len(want) {
		t.Fatalf("Diff = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("change %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if s := Summary(got); s != "1 added, 1 removed, 2 upgraded, 1 downgraded" {
		t.Errorf("Summary = %q", s)
	}
	if s := Summary(Diff(new, new)); s != "no package changes" {
		t.Errorf("Summary of no change = %q", s)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		typ, a, b string
		want      int
	}{
		{"deb", "2.4.65-1~deb12u1", "2.4.62-1~deb12u2", 1},
		{"deb", "1.0~rc1-1", "1.0-1", -1},
		{"deb", "1:1.0-1", "2.0-1", 1},
		{"deb", "1.0-1", "1.0-1", 0},
		{"deb", "1.0a-1", "1.0-1", 1},
		{"deb", "1.0+b1", "1.0", 1},
		{"deb", "10.11.11-0+deb12u1", "10.11.6-0+deb12u1", 1},
		{"rpm", "2.34-125.el9", "2.34-100.el9", 1},
		{"rpm", "6.12.0-55.el10", "5.14.0-570.el9_6", 1},
		{"rpm", "1.0~rc1-1", "1.0-1", -1},
		{"rpm", "1.0^git1-1", "1.0-1", 1},
		{"rpm", "1.0^git1-1", "1.0.1-1", -1},
		{"rpm", "1.0a-1", "1.0-1", 1},
		{"rpm", "1.01-1", "1.1-1", 0},
		{"rpm", "2:1.0-1", "1:9.0-1", 1},
		{"rpm", "5.1.8-9.el9", "5.1.8-9.el9", 0},
		{"rpm", "1.a-1", "1.1-1", -1},
	} {
		if got := CompareVersions(c.typ, c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%s, %q, %q) = %d, want %d", c.typ, c.a, c.b, got, c.want)
		}
		if got := CompareVersions(c.typ, c.b, c.a); got != -c.want {
			t.Errorf("CompareVersions(%s, %q, %q) = %d, want %d", c.typ, c.b, c.a, got, -c.want)
		}
	}
}
