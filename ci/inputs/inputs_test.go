package inputs

import (
	"io/fs"
	"strings"
	"testing"
)

func base() Inputs {
	return Inputs{
		Layer: "homepage", Profile: "centos-stream-9", Containerfile: "Containerfile",
		ParentDigest: "sha256:" + strings.Repeat("a", 64),
		Files: []File{
			{Path: "Containerfile", Mode: 0o644, Content: []byte("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY html/ /usr/share/www/html/\n")},
			{Path: "html/index.html", Mode: 0o644, Content: []byte("<h1>Image Mode for RHEL</h1>")},
			{Path: "bin/tool", Mode: 0o755, Content: []byte("#!/bin/sh\n")},
		},
		Generated: map[string][]byte{"imagemode-trust/usr/share/imagemode/trust.txt": []byte("none")},
		BuildArgs: map[string]string{"BASE_IMAGE": "reg/httpd@sha256:aaaa", "PROXY": "p"},
		Labels:    map[string]string{"io.imagemode.layer": "homepage"},
		Secrets:   map[string][]byte{"bootc-user-password-hash": []byte("$6$salt$hashvalue-secret-xyz")},
		Key:       []byte("k"),
	}
}

func digest(t *testing.T, in Inputs) string {
	t.Helper()
	d, err := Digest(in)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDigestChangesWhenAnInputChanges(t *testing.T) {
	ref := digest(t, base())
	if !strings.HasPrefix(ref, "sha256:") || len(ref) != 71 {
		t.Fatalf("digest %q", ref)
	}
	changes := map[string]func(*Inputs){
		"a Containerfile line":     func(in *Inputs) { in.Files[0].Content = append(in.Files[0].Content, "RUN true\n"...) },
		"a context file's content": func(in *Inputs) { in.Files[1].Content = []byte("<h1>Image Mode for RHEL 10</h1>") },
		"a context file's name":    func(in *Inputs) { in.Files[1].Path = "html/home.html" },
		"a file added":             func(in *Inputs) { in.Files = append(in.Files, File{Path: "x", Mode: 0o644}) },
		"a file's mode":            func(in *Inputs) { in.Files[2].Mode = 0o644 },
		"file to symlink":          func(in *Inputs) { in.Files[2].Mode |= fs.ModeSymlink },
		"a build arg value":        func(in *Inputs) { in.BuildArgs["PROXY"] = "q" },
		"a build arg added":        func(in *Inputs) { in.BuildArgs["NEW"] = "" },
		"the profile":              func(in *Inputs) { in.Profile = "centos-stream-10" },
		"the parent digest":        func(in *Inputs) { in.ParentDigest = "sha256:" + strings.Repeat("b", 64) },
		"a secret input":           func(in *Inputs) { in.Secrets["bootc-user-password-hash"] = []byte("$6$other") },
		"the HMAC key":             func(in *Inputs) { in.Key = []byte("other key") },
		"a generated file":         func(in *Inputs) { in.Generated["imagemode-trust/etc/containers/policy.json"] = []byte("{}") },
		"a label":                  func(in *Inputs) { in.Labels["org.opencontainers.image.source"] = "https://x" },
		"the Containerfile path":   func(in *Inputs) { in.Containerfile = "Containerfile.alt" },
		"the layer name":           func(in *Inputs) { in.Layer = "homepage2" },
		"SOURCE_DATE_EPOCH":        func(in *Inputs) { in.SourceDateEpoch = 1700000000 },
	}
	for name, change := range changes {
		in := base()
		change(&in)
		if d := digest(t, in); d == ref {
			t.Errorf("changing %s did not change the input digest", name)
		}
	}
}

func TestDigestIgnoresOrderMtimeAndRegistry(t *testing.T) {
	ref := digest(t, base())
	in := base()
	in.Files[0], in.Files[2] = in.Files[2], in.Files[0]
	if digest(t, in) != ref {
		t.Error("file order changed the digest")
	}
	in = base()
	in.BuildArgs["BASE_IMAGE"] = "elsewhere.example.com/im/httpd@sha256:aaaa"
	if digest(t, in) != ref {
		t.Error("the parent's registry name (BASE_IMAGE) changed the digest")
	}
	// mtimes are not part of File at all: the type cannot carry them.
	in = base()
	in.Files = append(in.Files, in.Files[0])
	if _, err := Digest(in); err == nil {
		t.Error("a duplicate file was accepted")
	}
	in = base()
	in.ParentDigest = ""
	if _, err := Digest(in); err == nil {
		t.Error("no parent digest was accepted")
	}
}

func TestNoSecretInTheDigestMaterial(t *testing.T) {
	in := base()
	d := digest(t, in)
	if strings.Contains(d, "hashvalue-secret-xyz") {
		t.Fatal("the secret appears in the digest")
	}
	// Same secret, no key: still not the secret, still stable.
	in.Key = nil
	d1, d2 := digest(t, in), digest(t, in)
	if d1 != d2 {
		t.Error("digest not stable without a key")
	}
	if Short(d1) != d1[7:19] {
		t.Errorf("Short = %q", Short(d1))
	}
}
