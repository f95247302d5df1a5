package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/imagemode/imagemode/ci/cmd/imagemode/internal/modulespec"
	"github.com/imagemode/imagemode/ci/policy"
	"github.com/imagemode/imagemode/ci/profile"
)

// TestModuleArgsGenerated: moduleargs_gen.go is what go generate makes of dagger/*.go now (run `go generate
// ./ci/cmd/imagemode` after changing the module's arguments or their doc comments).
func TestModuleArgsGenerated(t *testing.T) {
	args, err := modulespec.Read("../../../dagger")
	if err != nil {
		t.Fatal(err)
	}
	want, err := modulespec.Generate(args, "main")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("moduleargs_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("moduleargs_gen.go is out of date: run go generate ./ci/cmd/imagemode")
	}
	if a := args["build-all.reuse"]; a == nil || a.Default != "true" || a.Help == "" {
		t.Errorf("build-all.reuse = %+v", a)
	}
}

// TestEveryVerbsHelp: every verb's flags build (a help key the module lacks panics), and the shared defaults are the
// module's and the CLI's own constants alike.
func TestEveryVerbsHelp(t *testing.T) {
	for _, v := range verbs() {
		if code, _, errs := runCLI(t, v.name, "-h"); code != 0 {
			t.Errorf("%s -h: exit %d %s", v.name, code, errs)
		}
	}
	if mdefault("new.os-profile") != profile.Default || mdefault("new.trust-mode") != policy.ModeReject || mdefault("new.accel") != "auto" {
		t.Errorf("module defaults %q %q %q", mdefault("new.os-profile"), mdefault("new.trust-mode"), mdefault("new.accel"))
	}
}
