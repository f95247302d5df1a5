package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/gqlerror"
)

// findGQL is what the Go SDK's module runtime does with a function's error (templates/modules.go,
// findSingleGQLError): follow a single chain of wrapping down to an engine error and report that one.
func findGQL(err error) *gqlerror.Error {
	switch x := err.(type) {
	case *gqlerror.Error:
		return x
	case interface{ Unwrap() []error }:
		return nil
	case interface{ Unwrap() error }:
		return findGQL(x.Unwrap())
	}
	return nil
}

func TestFlattenKeepsTheProjectsMessage(t *testing.T) {
	engineErr := &gqlerror.Error{Message: "failed to export: failed to push 10.0.0.1:5000/x/soe:build-1"}
	wrapped := fmt.Errorf("level 0: %w", fmt.Errorf("building and publishing layer %q to %q: %w", "soe", "x/soe:build-1", engineErr))
	wrapped = fmt.Errorf("%w\n\nLAYER TABLE", wrapped)
	if g := findGQL(wrapped); g == nil || strings.Contains(g.Message, "building and publishing") {
		t.Fatalf("the runtime's unwrapping no longer drops the context (%v): Flatten may be unnecessary", g)
	}
	flat := Flatten(wrapped)
	if findGQL(flat) != nil {
		t.Error("the runtime would still report only the engine's error")
	}
	for _, want := range []string{"building and publishing layer \"soe\"", "failed to push", "LAYER TABLE"} {
		if !strings.Contains(flat.Error(), want) {
			t.Errorf("flattened message lacks %q: %s", want, flat)
		}
	}
	if Flatten(nil) != nil {
		t.Error("Flatten(nil) is not nil")
	}
	if errors.Unwrap(flat) != nil {
		t.Error("a flattened error unwraps")
	}
}

func TestCheckReachable(t *testing.T) {
	for _, ref := range []string{"127.0.0.1:5000/x", "localhost:5000/a/b", "localhost/a", "[::1]:5000/x", "127.0.0.2/x", "reg.localhost:5000/x"} {
		err := CheckReachable("--registry", ref)
		if err == nil || !strings.Contains(err.Error(), "--registry \""+ref+"\"") || !strings.Contains(err.Error(), "container") {
			t.Errorf("%s: %v", ref, err)
		}
	}
	for _, ref := range []string{"", "10.87.0.1:5055/run1", "ghcr.io/acme/imagemode", "quay.io/centos-bootc/centos-bootc:stream9", "library/debian", "registry.example.com:5000/x@sha256:abc"} {
		if err := CheckReachable("--registry", ref); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
}
