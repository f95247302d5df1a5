package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPlanJSONLevels(t *testing.T) {
	code, out, errs := runCLI(t, "plan", "--json", "--dir", "../../../containerfiles")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var pl struct {
		Levels [][]struct {
			Name   string `json:"name"`
			Parent string `json:"parent"`
		} `json:"levels"`
	}
	if err := json.Unmarshal([]byte(out), &pl); err != nil {
		t.Fatalf("plan --json output: %v\n%s", err, out)
	}
	var names [][]string
	parents := map[string]string{}
	for _, lv := range pl.Levels {
		var n []string
		for _, l := range lv {
			n = append(n, l.Name)
			parents[l.Name] = l.Parent
		}
		names = append(names, n)
	}
	if want := [][]string{{"soe"}, {"database", "httpd"}, {"homepage"}}; !reflect.DeepEqual(names, want) {
		t.Errorf("levels = %v, want %v", names, want)
	}
	if want := map[string]string{"soe": "", "database": "soe", "httpd": "soe", "homepage": "httpd"}; !reflect.DeepEqual(parents, want) {
		t.Errorf("parents = %v", parents)
	}
}

func TestLintProductAndBrokenVariants(t *testing.T) {
	if code, out, errs := runCLI(t, "lint", "--dir", "../../../containerfiles"); code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("lint of containerfiles/: exit %d\n%s%s", code, out, errs)
	}
	variants := map[string]string{
		"cycle":                 "layers.yaml:3:",
		"unknown-parent":        "layers.yaml:3:",
		"duplicate-name":        "layers.yaml:5:",
		"missing-containerfile": "layers.yaml:3:",
		"from-not-base-image":   "httpd/Containerfile:3:",
		"missing-lint":          "httpd/Containerfile:5:",
		"copy-under-var":        "httpd/Containerfile:4:",
	}
	for v, loc := range variants {
		dir := filepath.Join("../../layers/testdata", v)
		code, _, errs := runCLI(t, "lint", "--dir", dir)
		if code != 1 {
			t.Errorf("lint --dir %s: exit %d, want 1", dir, code)
		}
		if !strings.Contains(errs, filepath.Join(dir, loc)) {
			t.Errorf("lint --dir %s does not name %s:\n%s", dir, loc, errs)
		}
	}
	if code, _, _ := runCLI(t, "lint", "--dir", "../../layers/testdata/homepage-from-soe"); code != 0 {
		t.Errorf("the seed's homepage-FROM-soe graph must lint clean (exit %d)", code)
	}
}

func TestLintJSON(t *testing.T) {
	code, out, _ := runCLI(t, "lint", "--json", "--dir", "../../layers/testdata/copy-under-var")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var res struct {
		OK       bool `json:"ok"`
		Findings []struct {
			File, Rule string
			Line       int
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.OK || len(res.Findings) != 1 || res.Findings[0].Rule != "no-var-destination" || res.Findings[0].Line != 4 {
		t.Errorf("lint --json = %+v", res)
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: imagemode"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"build-all", "--dir", "../../../containerfiles"}, 2, "--registry is required"},
		{[]string{"build-all", "--dir", "../../../containerfiles", "--registry", "ghcr.io/acme/im", "--profile", "fedora"}, 2, `unknown --profile "fedora"`},
		{[]string{"build-all", "--dir", "../../../containerfiles", "--registry", "ghcr.io/acme/im", "--builder", "docker"}, 2, `--builder "docker"`},
		{[]string{"build-all", "--dir", "../../../containerfiles", "--registry", "ghcr.io/acme/im", "--build-arg", "NOEQUALS", "--commit", "0123456789abcdef"}, 2, `--build-arg "NOEQUALS"`},
		{[]string{"build", "--dir", "../../../containerfiles", "--registry", "ghcr.io/acme/im"}, 2, "--layer is required"},
		{[]string{"plan", "--nope"}, 2, "flag provided but not defined"},
		{[]string{"plan", "--dir", "/nonexistent"}, 1, `--dir "/nonexistent"`},
		{[]string{"build-all", "--dir", "../../../containerfiles", "--registry", "ghcr.io/acme/im", "--registry-username", "bot", "--commit", "0123456789abcdef"}, 2, "--registry-username given without a password"},
		{[]string{"build-all", "--dir", "../../../containerfiles", "--registry", "ghcr.io/acme/im", "--profile", "rhel-9.6", "--commit", "0123456789abcdef"}, 1, `profile "rhel-9.6" builds on registry.redhat.io/rhel9/rhel-bootc:9.6 and needs credentials`},
	}
	for _, tc := range cases {
		t.Setenv("IMAGEMODE_REGISTRY_PASSWORD", "")
		code, _, errs := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("imagemode %v: exit %d, stderr:\n%s\nwant exit %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
}
