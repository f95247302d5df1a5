package diskimage

import (
	"strings"
	"testing"

	"github.com/imagemode/imagemode/ci/internal/golden"
)

func TestConfigTOML(t *testing.T) {
	out, err := ConfigTOML(Config{
		Users:       []User{{Name: "bootc-user", Key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHl7 imagemode-run-42", Groups: []string{"wheel"}}},
		RootMinSize: "10 GiB",
	})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "config.toml.golden", out)
	for _, bad := range []Config{
		{Users: []User{{Name: "Root User"}}},
		{Users: []User{{Name: "u", Key: "ssh-ed25519 AAA\nssh-rsa BBB"}}},
		{Users: []User{{Name: "u", Key: "-----BEGIN OPENSSH PRIVATE KEY-----"}}},
		{Users: []User{{Name: "u", Groups: []string{"wheel\"; x"}}}},
		{KernelAppend: "a\nb"},
	} {
		if _, err := ConfigTOML(bad); err == nil {
			t.Errorf("ConfigTOML(%+v) accepted", bad)
		}
	}
}

func TestScripts(t *testing.T) {
	j := Job{Kind: KindBIB, Image: "ghcr.io/acme/imagemode/homepage@sha256:" + strings.Repeat("a", 64),
		Follow: "ghcr.io/acme/imagemode/homepage:centos-stream-9", TLSVerify: true}
	s, err := Script(j)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "bib.sh.golden", []byte(s))
	j.Kind, j.TLSVerify, j.AuthFile = KindImageBuilder, false, "/run/secrets/auth.json"
	if s, err = Script(j); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "image-builder.sh.golden", []byte(s))
	for _, bad := range []Job{
		{Image: "ghcr.io/a/b:tag", Follow: "ghcr.io/a/b:tag"},
		{Image: "ghcr.io/a/b@sha256:" + strings.Repeat("a", 64), Follow: "ghcr.io/a/b@sha256:x"},
		{Image: "ghcr.io/a/b@sha256:" + strings.Repeat("a", 64) + ";rm -rf /", Follow: "ghcr.io/a/b:t"},
	} {
		if _, err := Script(bad); err == nil {
			t.Errorf("Script(%+v) accepted", bad)
		}
	}
	if KindOf(ImageBuilderCLI) != KindImageBuilder || KindOf(BIBCentOS) != KindBIB || KindOf(BIBForRHEL(10)) != KindBIB {
		t.Error("KindOf misjudged a builder image")
	}
}
