//go:build module

// Package module tests the Dagger module as users run it: every function is called with `dagger call` against a
// running Dagger engine, with the stand-in image family (tests/standin) in a registry both the engine and its
// containers reach. `bash tests/run module` runs them; .ci/run cannot (no engine can be built in CI here); pr.yml
// runs them on GitHub.
//
//	IMAGEMODE_MODULE_REGISTRY   repository prefix for the run (required), e.g. $ENGINE_REGISTRY or ttl.sh/imagemode-123
//	IMAGEMODE_MODULE_UNREACHABLE  a registry host:port that refuses connections (default: the registry's host, port 1)
//	IMAGEMODE_ACCEL             tcg or auto for the smoke tests' reference runs (default tcg; GitHub: auto)
package module

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/tests/standin"
)

// env is what every module test shares.
var env struct {
	root     string // the repository root (dagger call -m)
	registry string // this run's repository prefix
	base     string // the stand-in base by digest
	commit   string // the commit the family is built at
	key, pub string // cosign key pair files
	otherPub string // a public key that signed nothing
	accel    string
}

const passwordEnv = "IMAGEMODE_MODULE_KEY_PASSWORD"

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "module tests: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "dagger", "core", "version").CombinedOutput(); err != nil {
		return fmt.Errorf("no Dagger engine answers `dagger core version` within 10 s (%v: %s)\n"+
			"Start one, then run again:\n"+
			"  development machines: ../shared/engine/engine.sh up --git-dir DIR; eval \"$(../shared/engine/engine.sh env)\";\n"+
			"                        export IMAGEMODE_MODULE_REGISTRY=$ENGINE_REGISTRY/imagemode-tests\n"+
			"  with Docker: install the dagger CLI v0.19.10 (it starts its engine) and use a registry the engine reaches",
			err, strings.TrimSpace(string(out)))
	}
	reg := os.Getenv("IMAGEMODE_MODULE_REGISTRY")
	if reg == "" {
		return errors.New("IMAGEMODE_MODULE_REGISTRY is not set: a repository prefix the engine and its containers reach " +
			"(the development kit's $ENGINE_REGISTRY/..., or ttl.sh/imagemode-RANDOM on GitHub)")
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	env.root = filepath.Clean(filepath.Join(wd, "..", ".."))
	env.registry = strings.TrimSuffix(reg, "/") + "/" + "mt" + time.Now().UTC().Format("0102t150405") + randHex(2)
	env.commit = randHex(20)
	env.accel = os.Getenv("IMAGEMODE_ACCEL")
	if env.accel == "" {
		env.accel = "tcg"
	}

	ctx, cancel = context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := ensureGolangImage(ctx, os.Stderr); err != nil {
		return err
	}
	tar, err := standin.BaseRootfs(ctx, os.Stderr)
	if err != nil {
		return err
	}
	d, err := standin.PushBase(ctx, tar, env.registry+"/standin/base:bookworm")
	if err != nil {
		return err
	}
	env.base = env.registry + "/standin/base@" + d

	dir, err := os.MkdirTemp("", "imagemode-module-tests-")
	if err != nil {
		return err
	}
	pass := randHex(12)
	if err := os.Setenv(passwordEnv, pass); err != nil {
		return err
	}
	priv, pub, err := signing.GenerateKeyPair([]byte(pass))
	if err != nil {
		return err
	}
	_, other, err := signing.GenerateKeyPair([]byte(pass))
	if err != nil {
		return err
	}
	env.key, env.pub, env.otherPub = filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub"), filepath.Join(dir, "other.pub")
	for f, b := range map[string][]byte{env.key: priv, env.pub: pub, env.otherPub: other} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "module tests: registry %s, base %s, commit %s\n", env.registry, env.base, env.commit)
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
