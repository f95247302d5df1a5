package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"
)

// moduleParams reads the Dagger module's functions and their parameters (kebab-case, as `dagger call` spells them).
func moduleParams(t *testing.T) map[string][]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../../../dagger/main.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv == nil || !fn.Name.IsExported() {
			continue
		}
		var params []string
		for _, p := range fn.Type.Params.List {
			for _, n := range p.Names {
				if n.Name != "ctx" {
					params = append(params, kebab(n.Name))
				}
			}
		}
		out[kebab(fn.Name.Name)] = params
	}
	return out
}

func kebab(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			prevLower := i > 0 && unicode.IsLower(rs[i-1])
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if i > 0 && (prevLower || (nextLower && unicode.IsUpper(rs[i-1]))) {
				b.WriteByte('-')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
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
	}
	// Arguments only the module has: the engine gives it what the CLI finds on the host.
	moduleOnly := map[string]string{
		"git":          "the module reads the commit from a git checkout object; the CLI runs git in --dir's checkout",
		"qemu-image":   "the module runs QEMU in a container; the CLI runs the host's QEMU",
		"disk":         "disk mode needs bootc-image-builder, which only the engine runs",
		"disk-builder": "disk mode needs bootc-image-builder, which only the engine runs",
		"report":       "the module takes the report's JSON as a string; the CLI reads a file (--from-report) and writes --report",
	}
	// Flags only the CLI has.
	cliOnly := map[string]string{
		"builder": "the host's builder (buildah)", "containers-conf": "buildah", "buildah-root": "buildah", "buildah-runroot": "buildah",
		"report": "writes the JSON report to a file (the module returns it)", "json": "output format (the module returns JSON or objects)",
		"from-report": "reads a report file (the module takes its JSON: --report)",
		"keyless":     "keyless signing takes the runner's OIDC token: a CLI step in GitHub Actions", "fulcio-url": "keyless",
		"rekor-url": "keyless", "identity-token-file": "keyless", "tlog-upload": "keyless",
		"certificate-identity-regexp": "keyless", "certificate-oidc-issuer": "keyless",
	}
	// Per verb, flags that exist on one side only for that verb.
	pairs := map[string]string{"build-all": "build-all", "build": "build", "ci": "ci", "smoke-test": "smoke", "sign": "sign",
		"verify": "verify", "promote": "promote", "plan": "plan", "lint": "lint", "lifecycle-test": "lifecycle-test"}
	verbOnly := map[string]map[string]string{
		"smoke": {"base-registry-username": "smoke reads only the images' registry", "base-registry-password-file": "as base-registry-username",
			"parallel": "VMs at once on the host (the module boots one at a time)", "mode": "the module's --disk",
			"layer":  "names the layer of an unlabelled image (the module reads the label)",
			"commit": "the run's commit for verdicts (the module takes it from --report or the labels)"},
		"sign":    {"base-registry-username": "sign reads only the images' registry", "base-registry-password-file": "as base-registry-username"},
		"verify":  {"base-registry-username": "verify reads only the images' registry", "base-registry-password-file": "as base-registry-username"},
		"promote": {"base-registry-username": "promote reads only the candidates' registry", "base-registry-password-file": "as base-registry-username"},
		"plan":    {"registry-username": "plan reads only the base image's registry", "registry-password-file": "as registry-username"},
		"lint":    {"base-image": "lint reads no image", "profile": "lint reads no image"},
		"lifecycle-test": {"ssh-key-file": "the host's VM comes from a disk made with a key the caller holds; the module makes its own",
			"user": "as ssh-key-file", "disk": "the host boots a disk made by `dagger call disk-image`; the module makes it",
			"memory": "the module's VM has 2 GiB", "layer": "names the layer of an unlabelled image (the module reads the label)",
			"base-registry-username": "reads only the images' registry", "base-registry-password-file": "as base-registry-username"},
	}
	params := moduleParams(t)
	for fn, verb := range pairs {
		mp, ok := params[fn]
		if !ok {
			t.Errorf("the module has no function %s", fn)
			continue
		}
		cli := map[string]bool{}
		for _, f := range cliFlags(t, verb) {
			cli[f] = true
		}
		seen := map[string]bool{}
		for _, p := range mp {
			want := p
			if a, ok := alias[p]; ok && !cli[p] {
				want = a
			}
			seen[want] = true
			if !cli[want] && moduleOnly[p] == "" {
				t.Errorf("module %s takes --%s; CLI %s has no --%s", fn, p, verb, want)
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
			t.Errorf("CLI %s takes --%s; module %s does not", verb, f, fn)
		}
	}
}
