//go:build integration

// Integration tests: the real registry (docker-registry), buildah, the stand-in image family and, for the smoke and
// life-cycle tests, QEMU. They run with `go test -tags integration ./tests/...` (.ci/run does) and fail when a part
// is missing.
package tests

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/imagemode/imagemode/tests/harness"
)

var env *harness.Env

func TestMain(m *testing.M) {
	var err error
	env, err = harness.Setup(context.Background())
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration setup failed: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	env.Close()
	os.Exit(code)
}
