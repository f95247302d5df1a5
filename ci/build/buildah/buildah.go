// Package buildah builds layers with buildah on the host: `buildah bud` of exactly the filtered build context, then
// `buildah push --digestfile`. It is how the pipeline's spine runs for real where no Dagger engine is available.
package buildah

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/imagemode/imagemode/ci/build"
	"github.com/imagemode/imagemode/ci/buildctx"
)

// Builder runs buildah.
type Builder struct {
	src      fs.FS
	bin      string
	root     string
	runRoot  string
	conf     string
	authFile string
	secrets  map[string]string
	tmpFiles []string
	log      io.Writer
	mu       sync.Mutex
}

// Option configures a Builder.
type Option func(*Builder) error

// WithBinary sets the buildah executable (default: buildah on PATH).
func WithBinary(path string) Option { return func(b *Builder) error { b.bin = path; return nil } }

// WithStorage sets buildah's storage root and run root (default: buildah's own, /var/lib/containers/storage as root).
func WithStorage(root, runRoot string) Option {
	return func(b *Builder) error { b.root, b.runRoot = root, runRoot; return nil }
}

// WithContainersConf points buildah at a containers.conf (CONTAINERS_CONF), e.g. one that selects runc and lowers
// default ulimits on hosts where crun or raising rlimits is refused.
func WithContainersConf(path string) Option {
	return func(b *Builder) error { b.conf = path; return nil }
}

// WithAuthFile sets the registry auth file buildah uses for pulls and pushes.
func WithAuthFile(path string) Option {
	return func(b *Builder) error { b.authFile = path; return nil }
}

// WithLog sends buildah's output, each line prefixed with the layer name, to w.
func WithLog(w io.Writer) Option { return func(b *Builder) error { b.log = w; return nil } }

// WithSecretFile makes the file at path available to RUN --mount=type=secret,id=<id>.
func WithSecretFile(id, path string) Option {
	return func(b *Builder) error {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("build secret %q: %w", id, err)
		}
		b.secrets[id] = path
		return nil
	}
}

// WithSecretValue makes value available to RUN --mount=type=secret,id=<id>. It is written to a private temporary
// file that Close removes.
func WithSecretValue(id string, value []byte) Option {
	return func(b *Builder) error {
		f, err := os.CreateTemp("", "imagemode-secret-")
		if err != nil {
			return fmt.Errorf("build secret %q: %w", id, err)
		}
		b.tmpFiles = append(b.tmpFiles, f.Name())
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return fmt.Errorf("build secret %q: %w", id, err)
		}
		if _, err := f.Write(value); err != nil {
			f.Close()
			return fmt.Errorf("build secret %q: %w", id, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("build secret %q: %w", id, err)
		}
		b.secrets[id] = f.Name()
		return nil
	}
}

// New returns a Builder reading build contexts from src (the containerfiles directory).
func New(src fs.FS, opts ...Option) (*Builder, error) {
	b := &Builder{src: src, bin: "buildah", secrets: map[string]string{}, log: io.Discard}
	for _, o := range opts {
		if err := o(b); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

// SecretIDs lists the build secrets the builder will pass.
func (b *Builder) SecretIDs() []string {
	var out []string
	for id := range b.secrets {
		out = append(out, id)
	}
	return out
}

// Close removes temporary secret files.
func (b *Builder) Close() error {
	var first error
	for _, f := range b.tmpFiles {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) && first == nil {
			first = fmt.Errorf("removing a temporary secret file: %w", err)
		}
	}
	b.tmpFiles = nil
	return first
}

func (b *Builder) globalArgs() []string {
	var args []string
	if b.root != "" {
		args = append(args, "--root", b.root)
	}
	if b.runRoot != "" {
		args = append(args, "--runroot", b.runRoot)
	}
	return args
}

// Build implements build.Builder.
func (b *Builder) Build(ctx context.Context, req build.Request) (build.Result, error) {
	if err := req.Validate(); err != nil {
		return build.Result{}, err
	}
	work, err := os.MkdirTemp("", "imagemode-build-"+req.Layer+"-")
	if err != nil {
		return build.Result{}, fmt.Errorf("layer %q: %w", req.Layer, err)
	}
	defer os.RemoveAll(work)
	ctxDir := filepath.Join(work, "context")

	files := make([]buildctx.File, 0, len(req.Files))
	for _, p := range req.Files {
		full := req.ContextDir + "/" + p
		info, err := fs.Lstat(b.src, full)
		if err != nil {
			return build.Result{}, fmt.Errorf("layer %q: build context file %q: %w", req.Layer, full, err)
		}
		files = append(files, buildctx.File{Path: p, Mode: info.Mode()})
	}
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		return build.Result{}, fmt.Errorf("layer %q: %w", req.Layer, err)
	}
	if err := buildctx.Materialize(b.src, req.ContextDir, files, req.ExtraFiles, ctxDir); err != nil {
		return build.Result{}, fmt.Errorf("layer %q: preparing the build context: %w", req.Layer, err)
	}

	insecure := isLoopback(req.Target)
	iidFile := filepath.Join(work, "iid")
	args := append(b.globalArgs(), "bud",
		"--file", filepath.Join(ctxDir, filepath.FromSlash(req.Containerfile)),
		"--iidfile", iidFile,
		"--format", "oci",
	)
	for _, k := range build.SortedKeys(req.BuildArgs) {
		args = append(args, "--build-arg", k+"="+req.BuildArgs[k])
	}
	for _, k := range build.SortedKeys(req.Labels) {
		args = append(args, "--label", k+"="+req.Labels[k])
	}
	for _, id := range build.SortedKeys(b.secrets) {
		args = append(args, "--secret", "id="+id+",src="+b.secrets[id])
	}
	if req.SourceDateEpoch != 0 {
		args = append(args, "--timestamp", strconv.FormatInt(req.SourceDateEpoch, 10))
	}
	args = append(args, b.tlsArgs(insecure)...)
	args = append(args, ctxDir)
	if err := b.run(ctx, req.Layer, args); err != nil {
		return build.Result{}, fmt.Errorf("building layer %q with buildah: %w", req.Layer, err)
	}
	iid, err := os.ReadFile(iidFile)
	if err != nil {
		return build.Result{}, fmt.Errorf("layer %q: reading the image id: %w", req.Layer, err)
	}

	digestFile := filepath.Join(work, "digest")
	push := append(b.globalArgs(), "push", "--digestfile", digestFile)
	push = append(push, b.tlsArgs(insecure)...)
	push = append(push, strings.TrimSpace(string(iid)), "docker://"+req.Target)
	if err := b.run(ctx, req.Layer, push); err != nil {
		return build.Result{}, fmt.Errorf("pushing layer %q to %q: %w", req.Layer, req.Target, err)
	}
	d, err := os.ReadFile(digestFile)
	if err != nil {
		return build.Result{}, fmt.Errorf("layer %q: reading the pushed digest: %w", req.Layer, err)
	}
	digest := strings.TrimSpace(string(d))
	if !strings.HasPrefix(digest, "sha256:") {
		return build.Result{}, fmt.Errorf("layer %q: buildah reported digest %q", req.Layer, digest)
	}
	repo, _, _ := strings.Cut(req.Target, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return build.Result{Digest: digest, Ref: repo + "@" + digest}, nil
}

func (b *Builder) tlsArgs(insecure bool) []string {
	var args []string
	if insecure {
		args = append(args, "--tls-verify=false")
	}
	if b.authFile != "" {
		args = append(args, "--authfile", b.authFile)
	}
	return args
}

// run executes buildah, streaming its output to the log and keeping the tail for the error.
func (b *Builder) run(ctx context.Context, layer string, args []string) error {
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Env = os.Environ()
	if b.conf != "" {
		cmd.Env = append(cmd.Env, "CONTAINERS_CONF="+b.conf)
	}
	tail := &tailBuffer{max: 40}
	w := io.MultiWriter(tail, &prefixWriter{prefix: "[" + layer + "] ", w: b.log, mu: &b.mu})
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", b.bin, args[len(b.globalArgs())], ctx.Err())
		}
		return fmt.Errorf("%s %s: %w\n%s", b.bin, args[len(b.globalArgs())], err, tail.String())
	}
	return nil
}

func isLoopback(ref string) bool {
	host, _, _ := strings.Cut(ref, "/")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// prefixWriter writes complete lines to w with a prefix.
type prefixWriter struct {
	prefix string
	w      io.Writer
	mu     *sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.mu.Lock()
		_, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.mu.Unlock()
		if err != nil {
			return len(b), err
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// tailBuffer keeps the last max lines written to it.
type tailBuffer struct {
	max   int
	lines []string
	part  []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.part = append(t.part, b...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, string(t.part[:i]))
		if len(t.lines) > t.max {
			t.lines = t.lines[len(t.lines)-t.max:]
		}
		t.part = t.part[i+1:]
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	lines := t.lines
	if len(t.part) > 0 {
		lines = append(lines, string(t.part))
	}
	return strings.Join(lines, "\n")
}
