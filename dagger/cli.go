package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"dagger/imagemode/internal/dagger"
)

// Where things are in the toolbox container the CLI runs in.
const (
	cliPath   = "/usr/local/bin/imagemode"
	workDir   = "/work"
	dirMount  = "/work/containerfiles" // the containerfiles directory; the CLI gets --dir containerfiles
	inDir     = "/work/in"             // files the module hands the CLI (reports, verdicts, step files)
	keyDir    = "/work/keys"           // public keys
	secretDir = "/run/secrets/imagemode"
	// golangImage builds the CLI. A Go 1.25 toolchain: the go directive of the project's go.mod.
	golangImage = "docker.io/library/golang:1.25-bookworm"
	// defaultQEMUImage is the toolbox's base when no --qemu-image is given: QEMU, qemu-img and mkfs.ext4 are
	// installed into it by apt (a step the engine caches).
	defaultQEMUImage = "docker.io/library/debian:bookworm-slim"
)

// cliBinary is the imagemode CLI: from --toolbox-image when given, else built from --source in a Go container.
// The engine caches the build by the source's digest (and the Go caches by volume), so only a changed source
// compiles again.
func (m *Imagemode) cliBinary() *dagger.File {
	if m.ToolboxImage != "" {
		return dag.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From(m.ToolboxImage).File(cliPath)
	}
	return dag.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From(golangImage).
		WithMountedCache("/go/pkg/mod", dag.CacheVolume("imagemode-go-mod")).
		WithMountedCache("/root/.cache/go-build", dag.CacheVolume("imagemode-go-build")).
		WithEnvVariable("CGO_ENABLED", "0").
		WithEnvVariable("GOTOOLCHAIN", "local").
		WithEnvVariable("GOFLAGS", "-mod=readonly -trimpath").
		WithDirectory("/src", m.Source).
		WithWorkdir("/src").
		WithExec([]string{"go", "build", "-o", "/out/imagemode", "./ci/cmd/imagemode"}).
		File("/out/imagemode")
}

// Toolbox returns the container the module runs the imagemode CLI in: the CLI with QEMU, qemu-img and mkfs.ext4
// (--qemu-image, or Debian with them installed). Open a shell in it with `dagger call toolbox terminal`.
func (m *Imagemode) Toolbox() *dagger.Container {
	if m.ToolboxImage != "" {
		return dag.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From(m.ToolboxImage)
	}
	var base *dagger.Container
	if m.QemuImage != "" {
		base = dag.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From(m.QemuImage)
	} else {
		base = dag.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From(defaultQEMUImage).
			WithMountedCache("/var/cache/apt", dag.CacheVolume("imagemode-apt-cache")).
			WithEnvVariable("DEBIAN_FRONTEND", "noninteractive").
			WithExec([]string{"apt-get", "update", "-qq"}).
			WithExec([]string{"apt-get", "install", "-y", "-qq", "--no-install-recommends",
				"qemu-system-x86", "qemu-utils", "e2fsprogs", "ca-certificates"}).
			WithExec([]string{"rm", "-rf", "/var/lib/apt/lists"})
	}
	return base.WithFile(cliPath, m.cliBinary()).WithWorkdir(workDir)
}

// invocation is one run of the CLI: the container it runs in and its arguments, built up by the with* helpers.
type invocation struct {
	ctr  *dagger.Container
	verb string
	args []string
	// fresh runs it on every call (it reads or writes changing remote state); insecure gives it root capabilities
	// and /dev/kvm (QEMU).
	fresh, insecure bool
}

func (m *Imagemode) cli(verb string, args ...string) *invocation {
	return &invocation{ctr: m.Toolbox(), verb: verb, args: args}
}

func (in *invocation) arg(a ...string) *invocation { in.args = append(in.args, a...); return in }

// withDir mounts the containerfiles directory (--dir).
func (in *invocation) withDir(m *Imagemode) *invocation {
	in.ctr = in.ctr.WithMountedDirectory(dirMount, m.Dir)
	return in.arg("--dir", "containerfiles")
}

// withFile hands the CLI a file with the given contents (a report, verdicts) under inDir; it returns its path.
func (in *invocation) withFile(name, contents string) string {
	p := inDir + "/" + name
	in.ctr = in.ctr.WithNewFile(p, contents)
	return p
}

// withSecret mounts a secret as a file for flag (nothing when it is nil).
func (in *invocation) withSecret(flag, name string, s *dagger.Secret) *invocation {
	if s == nil {
		return in
	}
	p := secretDir + "/" + name
	in.ctr = in.ctr.WithMountedSecret(p, s)
	return in.arg(flag, p)
}

// withKeyFile mounts a public key (not a secret) for flag.
func (in *invocation) withKeyFile(flag, name string, f *dagger.File) *invocation {
	if f == nil {
		return in
	}
	p := keyDir + "/" + name
	in.ctr = in.ctr.WithMountedFile(p, f)
	return in.arg(flag, p)
}

// withRegistryAuth passes the --registry credential.
func (in *invocation) withRegistryAuth(m *Imagemode) *invocation {
	if m.RegistryUsername != "" {
		in.arg("--registry-username", m.RegistryUsername)
	}
	return in.withSecret("--registry-password-file", "registry-password", m.RegistryPassword)
}

// withBaseAuth passes the base image registry's credential.
func (in *invocation) withBaseAuth(m *Imagemode) *invocation {
	if m.BaseRegistryUsername != "" {
		in.arg("--base-registry-username", m.BaseRegistryUsername)
	}
	return in.withSecret("--base-registry-password-file", "base-registry-password", m.BaseRegistryPassword)
}

// withSigningKey passes a cosign private key and its password.
func (in *invocation) withSigningKey(key, password *dagger.Secret) *invocation {
	in.withSecret("--key", "cosign.key", key)
	return in.withSecret("--key-password-file", "cosign.password", password)
}

// outcome is what a run of the CLI left: its container (for files it wrote), its output and its error.
type outcome struct {
	ctr            *dagger.Container
	stdout, stderr string
	code           int
}

// run runs the CLI. A non-zero exit is returned as the CLI's own error message (outcome set: reports written
// before the error can still be read); an error without an outcome is the engine's (the container did not run).
func (in *invocation) run(ctx context.Context) (*outcome, error) {
	ctr := in.ctr
	if in.fresh {
		nonce, err := nonce()
		if err != nil {
			return nil, err
		}
		ctr = ctr.WithEnvVariable("IMAGEMODE_CALL", nonce)
	}
	argv := append([]string{cliPath, in.verb}, in.args...)
	ctr = ctr.WithExec(argv, dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny, InsecureRootCapabilities: in.insecure})
	code, err := ctr.ExitCode(ctx)
	if err != nil {
		return nil, fmt.Errorf("running imagemode %s: %w", in.verb, err)
	}
	o := &outcome{ctr: ctr, code: code}
	if o.stdout, err = ctr.Stdout(ctx); err != nil {
		return nil, fmt.Errorf("reading the output of imagemode %s: %w", in.verb, err)
	}
	if o.stderr, err = ctr.Stderr(ctx); err != nil {
		return nil, fmt.Errorf("reading the errors of imagemode %s: %w", in.verb, err)
	}
	if code != 0 {
		return o, cliError(in.verb, code, o.stderr)
	}
	return o, nil
}

// file reads a file the CLI wrote.
func (o *outcome) file(ctx context.Context, path string) (string, error) {
	s, err := o.ctr.File(path).Contents(ctx)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return s, nil
}

// cliError is the CLI's own error message: from its last "imagemode VERB: " line to the end of its standard
// error (progress lines come before it); without one, the end of the standard error.
func cliError(verb string, code int, stderr string) error {
	prefix := "imagemode " + verb + ": "
	if i := strings.LastIndex(stderr, prefix); i >= 0 && (i == 0 || stderr[i-1] == '\n') {
		return errors.New(strings.TrimSpace(stderr[i:]))
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return fmt.Errorf("imagemode %s exited with status %d:\n%s", verb, code, strings.Join(lines, "\n"))
}

func nonce() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making a call id: %w", err)
	}
	return hex.EncodeToString(b), nil
}
