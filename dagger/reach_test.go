//go:build typecheck

package main

import (
	"strings"
	"testing"
)

// Run with `go test -tags typecheck` in dagger/ (the engine's generated client is not needed for pure functions).
func TestCheckReachable(t *testing.T) {
	for ref, bad := range map[string]bool{
		"127.0.0.1:5000/imagemode": true, "localhost:5000/x": true, "localhost/x": true, "[::1]:5000/x": true,
		"registry.localhost/x": true, "10.87.0.1:5055/imagemode": false, "ghcr.io/acme/imagemode": false,
		"library/debian": false, "": false,
	} {
		err := checkReachable("--registry", ref)
		if bad != (err != nil) {
			t.Errorf("%q: %v", ref, err)
		}
		if err != nil && !strings.Contains(err.Error(), "--registry") {
			t.Errorf("%q: the error does not name the flag: %v", ref, err)
		}
	}
}

func TestCLIError(t *testing.T) {
	stderr := "imagemode: [level 0] soe: building FROM x\nimagemode build-all: level 0: building and publishing layer \"soe\": refused\n  detail\n"
	if got := cliError("build-all", 1, stderr).Error(); got != "imagemode build-all: level 0: building and publishing layer \"soe\": refused\n  detail" {
		t.Errorf("cliError = %q", got)
	}
	if got := cliError("sign", 2, "panic: boom\ngoroutine 1\n").Error(); !strings.Contains(got, "status 2") || !strings.Contains(got, "panic: boom") {
		t.Errorf("cliError without the CLI's line = %q", got)
	}
}
