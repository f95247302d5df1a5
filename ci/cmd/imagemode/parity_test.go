package main

import (
	"bytes"
	"regexp"
	"sort"
	"testing"

	"github.com/imagemode/imagemode/ci/cmd/imagemode/internal/modulespec"
)

// moduleParams is the module's constructor ("new") and functions ("build-all", "run.smoke-test", ...) with their
// parameters, as modulespec reads them from dagger/*.go.
func moduleParams(t *testing.T) map[string][]string {
	t.Helper()
	_, funcs, err := modulespec.ReadAll("../../../dagger")
	if err != nil {
		t.Fatal(err)
	}
	return funcs
}

var flagLineRE = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

func cliFlags(t *testing.T, verb string) []string {
	t.Helper()
	var stderr bytes.Buffer
	if code := run(t.Context(), []string{verb, "-h"}, &bytes.Buffer{}, &stderr); code != 0 {
		t.Fatalf("imagemode %s -h: exit %d", verb, code)
	}
	var out []string
	for _, m := range flagLineRE.FindAllStringSubmatch(stderr.String(), -1) {
		out = append(out, m[1])
	}
	return out
}

// TestCLIAndModuleTakeTheSameFlags: every argument of a module function is a flag of the CLI verb that does the
// same, and the other way round, except where the two differ by nature (listed with the reason). A secret the
// module takes as a *dagger.Secret is a file (or an environment variable) on the CLI.
func TestCLIAndModuleTakeTheSameFlags(t *testing.T) {
	// module argument → CLI flag, where the names differ.
	alias := map[string]string{
		"registry-password": "registry-password-file", "base-registry-password": "base-registry-password-file",
		"password-hash": "password-hash-file", "inputs-key": "inputs-key-file", "password": "key-password-file",
		"os-profile": "profile", // Dagger 1.0's CLI has a global --profile of its own
	}
	// Arguments only the module has: the engine gives it what the CLI finds on the host.
	moduleOnly := map[string]string{
		"git":           "the module reads the commit from a git checkout object; the CLI runs git in --dir's checkout",
		"qemu-image":    "the module runs QEMU in a container; the CLI runs the host's QEMU",
		"source":        "the module builds the CLI from this source; the CLI is already built",
		"toolbox-image": "a released image with the CLI, instead of building it from --source",
		"disk":          "disk mode needs bootc-image-builder, which only the engine runs",
		"disk-builder":  "disk mode needs bootc-image-builder, which only the engine runs",
		"report":        "the module takes the report's JSON as a string; the CLI reads a file (--from-report) and writes --report",
	}
	// Flags only the CLI has.
	cliOnly := map[string]string{
		"builder": "the host's builder (buildah)", "containers-conf": "buildah", "buildah-root": "buildah", "buildah-runroot": "buildah",
		"report": "writes the JSON report to a file (the module returns it)", "json": "output format (the module returns JSON or objects)",
		"from-report": "reads a report file (the module takes its JSON: --report)",
		"keyless":     "keyless signing takes the runner's OIDC token: a CLI step in GitHub Actions", "fulcio-url": "keyless",
		"rekor-url": "keyless", "identity-token-file": "keyless", "tlog-upload": "keyless",
		"certificate-identity-regexp": "keyless", "certificate-oidc-issuer": "keyless",
		"step-in": "the module's builder drives build-all --builder engine step by step", "step-out": "as step-in", "step-serve": "as step-in",
		"mode":      "the module's --disk",
		"disk-file": "disk mode boots disks the module makes with the disk builder", "ssh-key-file": "the module makes the disks and their key",
		"ssh-user": "as ssh-key-file",
	}
	// Per verb, flags that exist on one side only for that verb.
	// CLI verb → the module functions that do the same (after the constructor).
	pairs := map[string][]string{"build-all": {"build-all"}, "build": {"build-all"}, "ci": {"build-all", "run.ci"},
		"smoke": {"images", "run.smoke-test", "run.attest"}, "sign": {"images", "run.sign"}, "verify": {"images", "run.verify"}, "promote": {"promote"},
		"diff": {"diff", "run.changes"}, "plan": {"plan"}, "lint": {"lint"}, "lifecycle-test": {"lifecycle-test"}}
	// Module arguments a verb's CLI does not have, for that verb.
	verbModuleOnly := map[string]map[string]string{
		"ci": {"layer": "the CLI's ci builds every layer"},
	}
	verbOnly := map[string]map[string]string{
		"smoke": {"base-registry-username": "smoke reads only the images' registry", "base-registry-password-file": "as base-registry-username",
			"parallel": "VMs at once on the host (the module boots one at a time)", "mode": "the module's --disk",
			"layer":  "names the layer of an unlabelled image (the module reads the label)",
			"commit": "the run's commit for verdicts (the module takes it from --report or the labels)"},
		"sign":    {"base-registry-username": "sign reads only the images' registry", "base-registry-password-file": "as base-registry-username"},
		"verify":  {"base-registry-username": "verify reads only the images' registry", "base-registry-password-file": "as base-registry-username"},
		"promote": {"base-registry-username": "promote reads only the candidates' registry", "base-registry-password-file": "as base-registry-username"},
		"diff":    {"base-registry-username": "diff reads only the images' registry", "base-registry-password-file": "as base-registry-username"},
		"plan":    {"registry-username": "plan reads only the base image's registry", "registry-password-file": "as registry-username"},
		"lint":    {"base-image": "lint reads no image", "profile": "lint reads no image"},
		"lifecycle-test": {"ssh-key-file": "the host's VM comes from a disk made with a key the caller holds; the module makes its own",
			"user": "as ssh-key-file", "disk": "the host boots a disk made by `dagger call disk-image`; the module makes it",
			"memory": "the module's VM has 2 GiB", "layer": "names the layer of an unlabelled image (the module reads the label)",
			"base-registry-username": "reads only the images' registry", "base-registry-password-file": "as base-registry-username"},
	}
	params := moduleParams(t)
	ctor := map[string]bool{}
	for _, p := range params["new"] {
		ctor[p] = true
	}
	if len(ctor) == 0 {
		t.Fatal("the module has no constructor")
	}
	usedCtor := map[string]bool{}
	for verb, fns := range pairs {
		var fnParams []string
		for _, fn := range fns {
			mp, ok := params[fn]
			if !ok {
				t.Errorf("the module has no function %s", fn)
			}
			fnParams = append(fnParams, mp...)
		}
		cli := map[string]bool{}
		for _, f := range cliFlags(t, verb) {
			cli[f] = true
		}
		cliName := func(p string) string {
			if a, ok := alias[p]; ok && !cli[p] {
				return a
			}
			return p
		}
		seen := map[string]bool{}
		// Every argument of the verb's functions is a flag of the verb.
		for _, p := range fnParams {
			want := cliName(p)
			seen[want] = true
			if !cli[want] && moduleOnly[p] == "" && verbModuleOnly[verb][p] == "" {
				t.Errorf("module %v takes --%s; CLI %s has no --%s", fns, p, verb, want)
			}
		}
		// Every flag of the verb is an argument of the constructor or of the verb's functions.
		for p := range ctor {
			if cli[cliName(p)] {
				seen[cliName(p)], usedCtor[p] = true, true
			}
		}
		var missing []string
		for f := range cli {
			if !seen[f] && cliOnly[f] == "" && verbOnly[verb][f] == "" {
				missing = append(missing, f)
			}
		}
		sort.Strings(missing)
		for _, f := range missing {
			t.Errorf("CLI %s takes --%s; the module (constructor or %v) does not", verb, f, fns)
		}
	}
	// Every constructor argument is a flag of some verb.
	for p := range ctor {
		if !usedCtor[p] && moduleOnly[p] == "" {
			t.Errorf("the module's constructor takes --%s; no CLI verb has --%s", p, alias[p])
		}
	}
}
