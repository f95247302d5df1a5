package buildctx

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"testing/fstest"
)

func TestListHonoursIgnoreFile(t *testing.T) {
	fsys := fstest.MapFS{
		"l/Containerfile":      {Data: []byte("FROM x\n")},
		"l/.containerignore":   {Data: []byte("*.md\nbuild/\n!build/keep.txt\nContainerfile\n")},
		"l/README.md":          {Data: []byte("doc")},
		"l/html/index.html":    {Data: []byte("<p>")},
		"l/build/out.bin":      {Data: []byte("x")},
		"l/build/keep.txt":     {Data: []byte("k")},
		"l/files/usr/bin/tool": {Data: []byte("#!/bin/sh\n"), Mode: 0o755},
		"other/Containerfile":  {Data: []byte("FROM y\n")},
	}
	files, err := List(fsys, "l", "Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".containerignore", "Containerfile", "build/keep.txt", "files/usr/bin/tool", "html/index.html"}
	if got := Paths(files); !reflect.DeepEqual(got, want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	for _, f := range files {
		if f.Path == "files/usr/bin/tool" && f.Mode.Perm() != 0o755 {
			t.Errorf("mode of tool = %v", f.Mode)
		}
	}
}

func TestDockerignoreFallbackAndNoIgnore(t *testing.T) {
	fsys := fstest.MapFS{
		"a/Containerfile": {Data: []byte("FROM x\n")},
		"a/.dockerignore": {Data: []byte("secret.txt\n")},
		"a/secret.txt":    {Data: []byte("s")},
		"b/Containerfile": {Data: []byte("FROM x\n")},
		"b/secret.txt":    {Data: []byte("s")},
	}
	a, err := List(fsys, "a", "Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	if got := Paths(a); !reflect.DeepEqual(got, []string{".dockerignore", "Containerfile"}) {
		t.Errorf("a = %v", got)
	}
	b, err := List(fsys, "b", "Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	if got := Paths(b); !reflect.DeepEqual(got, []string{"Containerfile", "secret.txt"}) {
		t.Errorf("b = %v", got)
	}
}

func TestMaterializeWritesExactlyTheSet(t *testing.T) {
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "l", "bin"), 0o755))
	must(os.WriteFile(filepath.Join(src, "l", "Containerfile"), []byte("FROM x\n"), 0o644))
	must(os.WriteFile(filepath.Join(src, "l", "bin", "run"), []byte("#!/bin/sh\n"), 0o755))
	must(os.WriteFile(filepath.Join(src, "l", "ignored"), []byte("no"), 0o644))
	must(os.Symlink("run", filepath.Join(src, "l", "bin", "start")))
	fsys := os.DirFS(src)
	files := []File{{Path: "Containerfile", Mode: 0o644}, {Path: "bin/run", Mode: 0o755}, {Path: "bin/start", Mode: fs.ModeSymlink | 0o777}}
	dest := t.TempDir()
	must(Materialize(fsys, "l", files, map[string][]byte{"trust/policy.json": []byte("{}")}, dest))

	var got []string
	must(filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dest, p)
			got = append(got, rel)
		}
		return nil
	}))
	want := []string{"Containerfile", "bin/run", "bin/start", "trust/policy.json"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("materialized %v, want %v", got, want)
	}
	st, err := os.Stat(filepath.Join(dest, "bin", "run"))
	must(err)
	if st.Mode().Perm() != 0o755 {
		t.Errorf("bin/run mode %v", st.Mode())
	}
	link, err := os.Readlink(filepath.Join(dest, "bin", "start"))
	must(err)
	if link != "run" {
		t.Errorf("symlink -> %q", link)
	}
	if err := Materialize(fsys, "l", nil, map[string][]byte{"../escape": nil}, dest); err == nil {
		t.Error("a generated file outside the context must be refused")
	}
}
