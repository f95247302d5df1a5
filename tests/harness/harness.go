// Package harness gives the integration tests their real parts: a docker-registry (distribution) on 127.0.0.1,
// the imagemode CLI built from this checkout, buildah settings that work on the CI machines, and the stand-in base
// image. A missing part is a test failure, never a skip: integration tests run only when asked for (build tag
// integration) and then must prove something.
package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagemode/imagemode/tests/standin"
)

// RepoRoot is the root of this checkout.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Env is shared by the tests of one process.
type Env struct {
	// Registry is host:port of the test registry.
	Registry string
	// CLI is the path of the imagemode binary built from this checkout.
	CLI string
	// ContainersConf is the containers.conf buildah runs with.
	ContainersConf string
	// BuildahRoot and BuildahRunRoot isolate buildah's storage for the tests.
	BuildahRoot, BuildahRunRoot string
	// Work is a scratch directory removed at the end.
	Work string
	// SigPolicy is the independent verifier (tests/sigpolicy, containers/image) built from this checkout.
	SigPolicy string

	stop []func()

	baseOnce sync.Once
	baseRef  string
	baseErr  error
}

// Setup prepares the environment for a TestMain; it returns an error instead of skipping when a part is missing.
func Setup(ctx context.Context) (*Env, error) {
	work, err := os.MkdirTemp("", "imagemode-it-")
	if err != nil {
		return nil, fmt.Errorf("creating a scratch directory: %w", err)
	}
	e := &Env{Work: work}
	e.stop = append(e.stop, func() { os.RemoveAll(work) })

	if e.Registry = os.Getenv("IMAGEMODE_TEST_REGISTRY"); e.Registry == "" {
		if err := e.startRegistry(ctx); err != nil {
			e.Close()
			return nil, err
		}
	}
	if err := waitRegistry(ctx, e.Registry, 15*time.Second); err != nil {
		e.Close()
		return nil, err
	}
	for _, tool := range []string{"buildah", "mmdebstrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			e.Close()
			return nil, fmt.Errorf("integration tests need %s (.ci/run installs it): %w", tool, err)
		}
	}
	e.CLI = filepath.Join(work, "imagemode")
	build := exec.CommandContext(ctx, "go", "build", "-o", e.CLI, "./ci/cmd/imagemode")
	build.Dir = RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		e.Close()
		return nil, fmt.Errorf("building the imagemode CLI: %w\n%s", err, out)
	}
	e.SigPolicy = filepath.Join(work, "sigpolicy")
	sp := exec.CommandContext(ctx, "go", "build", "-tags", "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper", "-o", e.SigPolicy, ".")
	sp.Dir = filepath.Join(RepoRoot(), "tests", "sigpolicy")
	sp.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := sp.CombinedOutput(); err != nil {
		e.Close()
		return nil, fmt.Errorf("building tests/sigpolicy: %w\n%s", err, out)
	}
	if e.ContainersConf = os.Getenv("CONTAINERS_CONF"); e.ContainersConf == "" {
		e.ContainersConf = filepath.Join(work, "containers.conf")
		conf := "[containers]\ndefault_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n\n[engine]\nruntime = \"runc\"\n"
		if err := os.WriteFile(e.ContainersConf, []byte(conf), 0o644); err != nil {
			e.Close()
			return nil, fmt.Errorf("writing containers.conf: %w", err)
		}
	}
	e.BuildahRoot = filepath.Join(work, "storage")
	e.BuildahRunRoot = filepath.Join(work, "run")
	e.stop = append(e.stop, func() {
		// overlay mounts under the storage root must go before the folder can be removed.
		cmd := exec.Command("buildah", "--root", e.BuildahRoot, "--runroot", e.BuildahRunRoot, "rm", "--all")
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+e.ContainersConf)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "harness: buildah rm --all: %v\n%s", err, out)
		}
		umount := exec.Command("sh", "-c", "grep -o ' "+e.BuildahRoot+"[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l")
		if out, err := umount.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "harness: unmounting buildah storage: %v\n%s", err, out)
		}
	})
	return e, nil
}

// Close stops what Setup started, in reverse order.
func (e *Env) Close() {
	for i := len(e.stop) - 1; i >= 0; i-- {
		e.stop[i]()
	}
	e.stop = nil
}

func (e *Env) startRegistry(ctx context.Context) error {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return fmt.Errorf("integration tests need a registry: set IMAGEMODE_TEST_REGISTRY=host:port or install docker-registry (apt-get install docker-registry): %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(e.Work, "registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %q: %w", dir, err)
	}
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:%d\n", dir, port)
	confPath := filepath.Join(e.Work, "registry.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("writing the registry config: %w", err)
	}
	logf, err := os.Create(filepath.Join(e.Work, "registry.log"))
	if err != nil {
		return fmt.Errorf("creating the registry log: %w", err)
	}
	cmd := exec.Command(bin, "serve", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting docker-registry: %w", err)
	}
	e.stop = append(e.stop, func() {
		if err := cmd.Process.Kill(); err != nil {
			fmt.Fprintf(os.Stderr, "harness: stopping docker-registry: %v\n", err)
		}
		if err := cmd.Wait(); err != nil && !strings.Contains(err.Error(), "killed") {
			fmt.Fprintf(os.Stderr, "harness: docker-registry: %v\n", err)
		}
		logf.Close()
	})
	e.Registry = fmt.Sprintf("127.0.0.1:%d", port)
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	return port, nil
}

func waitRegistry(ctx context.Context, host string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/", nil)
		if err != nil {
			return fmt.Errorf("registry %s: %w", host, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("registry %s did not answer /v2/ within %s (last error: %v)", host, d, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Namespace returns a fresh repository prefix in the test registry.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return e.Registry + "/it-" + hex.EncodeToString(b)
}

// StandinBase returns the reference of the stand-in base image in the test registry, building and pushing it once.
func (e *Env) StandinBase(t testing.TB) string {
	t.Helper()
	ctx := t.Context()
	e.baseOnce.Do(func() {
		var log bytes.Buffer
		tarPath, err := standin.BaseRootfs(ctx, &log)
		if err != nil {
			e.baseErr = fmt.Errorf("%w\n%s", err, tail(log.String(), 30))
			return
		}
		ref := e.Registry + "/standin/base:" + standin.Suite
		if _, err := standin.PushBase(ctx, tarPath, ref); err != nil {
			e.baseErr = err
			return
		}
		e.baseRef = ref
	})
	if e.baseErr != nil {
		t.Fatalf("stand-in base: %v", e.baseErr)
	}
	return e.baseRef
}

// Result is what a CLI run printed.
type Result struct {
	Stdout, Stderr string
	Err            error
	ExitCode       int
}

// Run runs the imagemode CLI with args from the repository root.
func (e *Env) Run(ctx context.Context, args ...string) Result {
	return e.RunEnv(ctx, nil, args...)
}

// RunEnv runs the imagemode CLI with extra environment variables.
func (e *Env) RunEnv(ctx context.Context, extraEnv []string, args ...string) Result {
	cmd := exec.CommandContext(ctx, e.CLI, args...)
	cmd.Dir = RepoRoot()
	cmd.Env = append(append(os.Environ(), "CONTAINERS_CONF="+e.ContainersConf), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(&stderr, progressWriter())
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Err: err, ExitCode: code}
}

// BuildahArgs are the CLI flags that point buildah at the tests' storage.
func (e *Env) BuildahArgs() []string {
	return []string{"--buildah-root", e.BuildahRoot, "--buildah-runroot", e.BuildahRunRoot, "--containers-conf", e.ContainersConf}
}

// progressWriter shows CLI progress live when IMAGEMODE_TEST_VERBOSE is set.
func progressWriter() io.Writer {
	if os.Getenv("IMAGEMODE_TEST_VERBOSE") != "" {
		return os.Stderr
	}
	return io.Discard
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CopyDir copies a directory tree (files and modes) to dst, for tests that break a copy of the fixtures.
func CopyDir(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	})
}
