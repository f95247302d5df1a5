package pipeline

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/imagemode/imagemode/ci/build"
	"github.com/imagemode/imagemode/ci/internal/regtest"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/policy"
	"github.com/imagemode/imagemode/ci/profile"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/tags"
)

const commit = "0123456789abcdef0123456789abcdef01234567"

// fakeBuilder pushes a random image per request and records what it was asked.
type fakeBuilder struct {
	mu   sync.Mutex
	reqs []build.Request
	fail map[string]error
}

func (f *fakeBuilder) Build(ctx context.Context, req build.Request) (build.Result, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	err := f.fail[req.Layer]
	f.mu.Unlock()
	if err != nil {
		return build.Result{}, err
	}
	d, err := regtest.Push(ctx, req.Target, 512, 1, req.Labels)
	if err != nil {
		return build.Result{}, err
	}
	repo := req.Target[:strings.LastIndex(req.Target, ":")]
	return build.Result{Digest: d, Ref: repo + "@" + d}, nil
}

func (f *fakeBuilder) request(layer string) (build.Request, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.reqs {
		if r.Layer == layer {
			return r, true
		}
	}
	return build.Request{}, false
}

type fixture struct {
	reg   *registry.Client
	host  string
	cfg   Config
	base  string
	baseD string
	fb    *fakeBuilder
	p     *Pipeline
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	host := regtest.Start(t, nil)
	base := host + "/upstream/centos-bootc:stream9"
	baseD, err := regtest.Push(t.Context(), base, 512, 1, map[string]string{"containers.bootc": "1"})
	if err != nil {
		t.Fatal(err)
	}
	prof, err := profile.Resolve("centos-stream-9", base)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.WithRetry(registry.Retry{Steps: 1}))
	fb := &fakeBuilder{fail: map[string]error{}}
	return &fixture{
		reg: reg, host: host, base: base, baseD: baseD, fb: fb,
		p: New(fb, reg),
		cfg: Config{
			Source: os.DirFS("../../containerfiles"), Dir: ".", DisplayDir: "containerfiles",
			Registry: host + "/imagemode", Profile: prof, Commit: commit, RunID: "r1",
		},
	}
}

func TestBuildAllOrderDigestsLabelsAndCandidates(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	rep, err := f.p.BuildAll(ctx, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Candidates || len(rep.Layers) != 4 {
		t.Fatalf("report: candidates=%v layers=%d", rep.Candidates, len(rep.Layers))
	}
	// Order: every request comes after its parent's.
	pos := map[string]int{}
	for i, r := range f.fb.reqs {
		pos[r.Layer] = i
	}
	for child, parent := range map[string]string{"httpd": "soe", "database": "soe", "homepage": "httpd"} {
		if pos[child] < pos[parent] {
			t.Errorf("%s built before its parent %s", child, parent)
		}
	}
	soe, _ := rep.Layer("soe")
	if soe.ParentDigest != f.baseD {
		t.Errorf("soe parent digest = %s, want the base digest %s", soe.ParentDigest, f.baseD)
	}
	req, _ := f.fb.request("soe")
	if want := f.host + "/upstream/centos-bootc@" + f.baseD; req.BuildArgs["BASE_IMAGE"] != want {
		t.Errorf("soe BASE_IMAGE = %q, want the base pinned by digest %q", req.BuildArgs["BASE_IMAGE"], want)
	}
	for _, child := range []string{"httpd", "database", "homepage"} {
		l, _ := rep.Layer(child)
		parent, _ := rep.Layer(l.Parent)
		req, _ := f.fb.request(child)
		if req.BuildArgs["BASE_IMAGE"] != parent.Ref {
			t.Errorf("%s BASE_IMAGE = %q, want parent ref %q", child, req.BuildArgs["BASE_IMAGE"], parent.Ref)
		}
		labels, err := f.reg.Labels(ctx, l.Ref)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			layers.LabelRevision: commit, layers.LabelBaseDigest: parent.Digest, layers.LabelBaseName: parent.Ref,
			layers.LabelLayer: child, layers.LabelParent: l.Parent, layers.LabelProfile: "centos-stream-9", layers.LabelTitle: child,
		}
		for k, v := range want {
			if labels[k] != v {
				t.Errorf("%s label %s = %q, want %q", child, k, labels[k], v)
			}
		}
		if l.ParentDigest != parent.Digest {
			t.Errorf("%s parent digest %s != %s", child, l.ParentDigest, parent.Digest)
		}
	}
	for _, l := range rep.Layers {
		if l.CandidateTag != "sha-0123456789ab-centos-stream-9" || l.RunTag != "build-r1-centos-stream-9" {
			t.Errorf("%s tags: run %q candidate %q", l.Name, l.RunTag, l.CandidateTag)
		}
		d, err := f.reg.Digest(ctx, l.CandidateRef())
		if err != nil || d != l.Digest {
			t.Errorf("%s candidate tag points at %s (%v), want %s", l.Name, d, err, l.Digest)
		}
		if l.Status != report.StatusBuilt {
			t.Errorf("%s status %q", l.Name, l.Status)
		}
	}
	// The context sent is exactly the layer folder's files.
	req, _ = f.fb.request("httpd")
	if !reflect.DeepEqual(req.Files, []string{"Containerfile", "files/usr/lib/tmpfiles.d/imagemode-httpd.conf", "html/index.html", "html/style.css"}) {
		t.Errorf("httpd context files = %v", req.Files)
	}
	if !strings.Contains(rep.Table(), "homepage") || !strings.Contains(rep.Table(), "sha-0123456789ab-centos-stream-9") {
		t.Errorf("table:\n%s", rep.Table())
	}
}

func TestFailureInLevelOneLeavesNoCandidateTag(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	f.fb.fail["database"] = errors.New("dnf: no package mariadb-server")
	rep, err := f.p.BuildAll(ctx, f.cfg)
	if err == nil || !strings.Contains(err.Error(), "level 1") || !strings.Contains(err.Error(), "mariadb-server") {
		t.Fatalf("error = %v", err)
	}
	if rep == nil || rep.Candidates {
		t.Fatalf("report must say candidates were not written: %+v", rep)
	}
	if _, ok := f.fb.request("homepage"); ok {
		t.Error("homepage (level 2) was built after level 1 failed")
	}
	for _, layer := range []string{"soe", "httpd", "database", "homepage"} {
		tags, err := f.reg.Tags(ctx, f.cfg.Registry+"/"+layer)
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range tags {
			if strings.HasPrefix(tg, "sha-") {
				t.Errorf("%s has candidate tag %s after a failed run", layer, tg)
			}
		}
	}
}

func TestBuildOneLayerBuildsItsAncestors(t *testing.T) {
	f := newFixture(t)
	f.cfg.Layers = []string{"homepage"}
	rep, err := f.p.BuildAll(t.Context(), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range rep.Layers {
		names = append(names, l.Name)
	}
	if !reflect.DeepEqual(names, []string{"soe", "httpd", "homepage"}) {
		t.Errorf("built %v", names)
	}
}

func TestChecksBeforeBuilding(t *testing.T) {
	f := newFixture(t)
	rhel, err := profile.Resolve("rhel-9.6", "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"no registry", func(c *Config) { c.Registry = "" }, "--registry is required"},
		{"registry with tag", func(c *Config) { c.Registry = f.host + "/imagemode:latest" }, "without a tag"},
		{"short registry", func(c *Config) { c.Registry = "imagemode" }, "start with the registry host"},
		{"no commit", func(c *Config) { c.Commit = "" }, "--commit is required"},
		{"bad commit", func(c *Config) { c.Commit = "HEAD" }, `--commit "HEAD"`},
		{"bad run id", func(c *Config) { c.RunID = "Run 1" }, `--run-id "Run 1"`},
		{"base arg", func(c *Config) { c.BuildArgs = map[string]string{"BASE_IMAGE": "x"} }, "--build-arg BASE_IMAGE"},
		{"rhel without subscription", func(c *Config) { c.Profile = rhel }, `profile "rhel-9.6"`},
		{"unknown layer", func(c *Config) { c.Layers = []string{"webserver"} }, `no layer named "webserver"`},
		{"broken graph", func(c *Config) { c.Source = os.DirFS("../layers/testdata/cycle"); c.DisplayDir = "cycle" }, "cycle/layers.yaml:3: cycle"},
		{"lint failure", func(c *Config) { c.Source = os.DirFS("../layers/testdata/copy-under-var"); c.DisplayDir = "cv" }, "cv/httpd/Containerfile:4"},
		{"missing base", func(c *Config) { c.Profile.BaseImage = f.host + "/upstream/nothing:1" }, "resolving the base image"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.fb.reqs = nil
			cfg := f.cfg
			tc.mod(&cfg)
			_, err := f.p.BuildAll(t.Context(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
			if len(f.fb.reqs) != 0 {
				t.Errorf("the builder was called %d time(s) before the check failed", len(f.fb.reqs))
			}
		})
	}
}

func TestBuilderDigestMustMatchRegistry(t *testing.T) {
	f := newFixture(t)
	lying := build.Func(func(ctx context.Context, req build.Request) (build.Result, error) {
		if _, err := regtest.Push(ctx, req.Target, 512, 1, req.Labels); err != nil {
			return build.Result{}, err
		}
		return build.Result{Digest: "sha256:" + strings.Repeat("0", 64)}, nil
	})
	_, err := New(lying, f.reg).BuildAll(t.Context(), f.cfg)
	if err == nil || !strings.Contains(err.Error(), "the builder reported sha256:0000") {
		t.Fatalf("error = %v", err)
	}
}

func TestPlanLevels(t *testing.T) {
	f := newFixture(t)
	pl, err := f.p.Plan(t.Context(), Config{Source: f.cfg.Source, Dir: ".", Profile: f.cfg.Profile}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"soe"}, {"database", "httpd"}, {"homepage"}}; !reflect.DeepEqual(pl.Names(), want) {
		t.Errorf("levels = %v", pl.Names())
	}
	if pl.BaseDigest != "" {
		t.Errorf("plan without resolve has a digest %q", pl.BaseDigest)
	}
	pl, err = f.p.Plan(t.Context(), f.cfg, PlanOptions{Resolve: true})
	if err != nil {
		t.Fatal(err)
	}
	if pl.BaseDigest != f.baseD || pl.Levels[2][0].Repository != f.cfg.Registry+"/homepage" {
		t.Errorf("plan = %+v", pl)
	}
}

func TestExtraBuildArgsLabelsAndEpoch(t *testing.T) {
	f := newFixture(t)
	f.cfg.BuildArgs = map[string]string{"HTTP_PROXY_HOST": "proxy.example.com"}
	f.cfg.SourceURL = "https://github.com/acme/imagemode"
	f.cfg.SourceDateEpoch = 1764000000
	if _, err := f.p.BuildAll(t.Context(), f.cfg); err != nil {
		t.Fatal(err)
	}
	for _, layer := range []string{"soe", "httpd", "database", "homepage"} {
		req, ok := f.fb.request(layer)
		if !ok {
			t.Fatalf("%s not built", layer)
		}
		if req.BuildArgs["HTTP_PROXY_HOST"] != "proxy.example.com" || req.BuildArgs["BASE_IMAGE"] == "" {
			t.Errorf("%s build args = %v", layer, req.BuildArgs)
		}
		if req.Labels[layers.LabelSource] != f.cfg.SourceURL {
			t.Errorf("%s source label = %q", layer, req.Labels[layers.LabelSource])
		}
		if req.SourceDateEpoch != 1764000000 {
			t.Errorf("%s epoch = %d", layer, req.SourceDateEpoch)
		}
		if req.Target != f.cfg.Registry+"/"+layer+":build-r1-centos-stream-9" {
			t.Errorf("%s target = %q", layer, req.Target)
		}
	}
	soe, _ := f.fb.request("soe")
	if _, ok := soe.Labels[layers.LabelParent]; ok {
		t.Errorf("the root layer has a parent label: %v", soe.Labels)
	}
}

func TestTrustPolicyInjectedIntoRootLayer(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	// A base image that ships a policy.json with Red Hat's GPG entry.
	basePolicy := `{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"registry.redhat.io":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/etc/pki/rpm-gpg/RPM-GPG-KEY-redhat-release"}]}}}`
	base := f.host + "/upstream/rhel-bootc:9.6"
	if _, err := pushWithFile(ctx, base, "etc/containers/policy.json", basePolicy); err != nil {
		t.Fatal(err)
	}
	f.cfg.Profile.BaseImage = base
	pub, err := os.ReadFile("../policy/testdata/key.pub")
	if err != nil {
		t.Fatal(err)
	}
	f.cfg.Trust = &policy.Config{PublicKey: pub, Namespaces: []string{f.cfg.Registry}}
	if _, err := f.p.BuildAll(ctx, f.cfg); err != nil {
		t.Fatal(err)
	}
	soe, _ := f.fb.request("soe")
	pol := string(soe.ExtraFiles["imagemode-trust/etc/containers/policy.json"])
	for _, want := range []string{`"registry.redhat.io"`, `"signedBy"`, `"` + f.cfg.Registry + `"`, `"sigstoreSigned"`, `"matchRepository"`} {
		if !strings.Contains(pol, want) {
			t.Errorf("injected policy lacks %s:\n%s", want, pol)
		}
	}
	if string(soe.ExtraFiles["imagemode-trust/etc/pki/containers/imagemode.pub"]) != strings.TrimSpace(string(pub))+"\n" {
		t.Errorf("key not injected")
	}
	httpd, _ := f.fb.request("httpd")
	if len(httpd.ExtraFiles) != 0 {
		t.Errorf("a child layer got generated files: %v", httpd.ExtraFiles)
	}

	// Without --trust-key: only the note.
	f2 := newFixture(t)
	if _, err := f2.p.BuildAll(ctx, f2.cfg); err != nil {
		t.Fatal(err)
	}
	soe, _ = f2.fb.request("soe")
	if len(soe.ExtraFiles) != 1 || !strings.Contains(string(soe.ExtraFiles["imagemode-trust/usr/share/imagemode/trust.txt"]), "no signature policy") {
		t.Errorf("extra files without trust: %v", soe.ExtraFiles)
	}

	// A root layer that does not copy the folder is refused before anything is built.
	f3 := newFixture(t)
	f3.cfg.Source = os.DirFS("../layers/testdata/homepage-from-soe")
	f3.cfg.DisplayDir = "hp"
	f3.cfg.Trust = &policy.Config{PublicKey: pub, Namespaces: []string{f3.cfg.Registry}}
	_, err = f3.p.BuildAll(ctx, f3.cfg)
	if err == nil || !strings.Contains(err.Error(), "hp/soe/Containerfile: the root layer must `COPY imagemode-trust/ /`") {
		t.Errorf("error = %v", err)
	}
	if len(f3.fb.reqs) != 0 {
		t.Errorf("built %d layers", len(f3.fb.reqs))
	}
}

func pushWithFile(ctx context.Context, ref, path, content string) (string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: path, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		return "", err
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return "", err
	}
	d, err := img.Digest()
	return d.String(), err
}

// copyTree copies the product containerfiles to a temporary folder the test may edit.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestReuseByInputs(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	dir := copyTree(t, "../../containerfiles")
	f.cfg.Source = os.DirFS(dir)
	priv, pub, err := signing.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signing.NewKeySigner(priv, []byte("pw"), f.reg)
	if err != nil {
		t.Fatal(err)
	}
	ver, err := signing.NewKeyVerifier(pub, f.reg)
	if err != nil {
		t.Fatal(err)
	}
	p := New(f.fb, f.reg, WithVerifier(ver))
	f.cfg.Reuse = true
	f.cfg.SecretInputs = map[string][]byte{"bootc-user-password-hash": []byte("$6$secret-hash-value")}

	run := func(runID, commit string) *report.Report {
		t.Helper()
		f.fb.reqs = nil
		cfg := f.cfg
		cfg.RunID, cfg.Commit = runID, commit
		rep, err := p.BuildAll(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range rep.Layers {
			if err := signer.Sign(ctx, l.Ref); err != nil {
				t.Fatal(err)
			}
		}
		return rep
	}
	built := func() []string {
		var out []string
		for _, r := range f.fb.reqs {
			out = append(out, r.Layer)
		}
		sort.Strings(out)
		return out
	}

	first := run("r1", strings.Repeat("1", 40))
	if got := built(); len(got) != 4 {
		t.Fatalf("first run built %v", got)
	}
	for _, l := range first.Layers {
		if l.InputDigest == "" || l.Status != report.StatusBuilt {
			t.Errorf("%s: %+v", l.Name, l)
		}
		if d, err := f.reg.Digest(ctx, l.Repository+":"+tags.Inputs(l.InputDigest)); err != nil || d != l.Digest {
			t.Errorf("%s inputs tag -> %s (%v)", l.Name, d, err)
		}
		labels, err := f.reg.Labels(ctx, l.Ref)
		if err != nil || labels[layers.LabelInputs] != l.InputDigest {
			t.Errorf("%s inputs label %q (%v)", l.Name, labels[layers.LabelInputs], err)
		}
		for _, v := range labels {
			if strings.Contains(v, "secret-hash-value") {
				t.Errorf("%s: a label holds the secret", l.Name)
			}
		}
	}

	second := run("r2", strings.Repeat("2", 40))
	if got := built(); len(got) != 0 {
		t.Errorf("an unchanged second run built %v", got)
	}
	for _, l := range second.Layers {
		prev, _ := first.Layer(l.Name)
		if l.Status != report.StatusReused || l.Digest != prev.Digest || l.ReusedFrom != strings.Repeat("1", 40) {
			t.Errorf("%s: %+v", l.Name, l)
		}
		if d, err := f.reg.Digest(ctx, l.CandidateRef()); err != nil || d != prev.Digest {
			t.Errorf("%s candidate of the second commit -> %s (%v)", l.Name, d, err)
		}
	}

	edit := func(file, from, to string) {
		t.Helper()
		p := filepath.Join(dir, file)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), from) {
			t.Fatalf("%s lacks %q", file, from)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(data), from, to, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit("homepage/html/index.html", "Boot every image", "Boot and test every image")
	run("r3", strings.Repeat("3", 40))
	if got := built(); strings.Join(got, ",") != "homepage" {
		t.Errorf("a homepage-only change built %v", got)
	}
	edit("database/files/etc/my.cnf.d/90-imagemode.cnf", "skip-name-resolve", "skip-name-resolve\nmax_connections = 200")
	run("r4", strings.Repeat("4", 40))
	if got := built(); strings.Join(got, ",") != "database" {
		t.Errorf("a database-only change built %v", got)
	}
	edit("soe/files/etc/sudoers.d/wheel", "NOPASSWD", "NOPASSWD:SETENV")
	run("r5", strings.Repeat("5", 40))
	if got := built(); len(got) != 4 {
		t.Errorf("an SOE change built %v", got)
	}
	// A changed secret input rebuilds the layers that use it (all: the root changes).
	f.cfg.SecretInputs = map[string][]byte{"bootc-user-password-hash": []byte("$6$another")}
	run("r6", strings.Repeat("6", 40))
	if got := built(); len(got) != 4 {
		t.Errorf("a changed secret input built %v", got)
	}
	// --refresh forces a layer and therefore its descendants (their parent digest changes).
	f.cfg.Refresh = []string{"httpd"}
	run("r7", strings.Repeat("7", 40))
	if got := built(); strings.Join(got, ",") != "homepage,httpd" {
		t.Errorf("--refresh httpd built %v", got)
	}
	f.cfg.Refresh = []string{"nosuch"}
	if _, err := p.BuildAll(ctx, f.cfg); err == nil || !strings.Contains(err.Error(), `--refresh "nosuch"`) {
		t.Errorf("unknown --refresh: %v", err)
	}
}

func TestReuseRefusesUnsignedImages(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	_, pub, err := signing.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	ver, err := signing.NewKeyVerifier(pub, f.reg)
	if err != nil {
		t.Fatal(err)
	}
	p := New(f.fb, f.reg, WithVerifier(ver))
	f.cfg.Reuse = true
	if _, err := p.BuildAll(ctx, f.cfg); err != nil {
		t.Fatal(err)
	}
	f.fb.reqs = nil
	f.cfg.RunID = "r2"
	rep, err := p.BuildAll(ctx, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.fb.reqs) != 4 {
		t.Errorf("unsigned images were reused: built %d", len(f.fb.reqs))
	}
	for _, l := range rep.Layers {
		if l.Status != report.StatusBuilt {
			t.Errorf("%s %s", l.Name, l.Status)
		}
	}
}

// TestEpochInputs: an asked-for SOURCE_DATE_EPOCH is an input (another epoch is another image); the commit time the
// CLI uses by default reaches the builder but is not an input (a reused image keeps its commit's time).
func TestEpochInputs(t *testing.T) {
	f := newFixture(t)
	run := 0
	inputsOf := func(set func(*Config)) (string, int64) {
		cfg := f.cfg
		run++
		cfg.RunID = fmt.Sprintf("epoch%d", run)
		set(&cfg)
		f.fb.mu.Lock()
		f.fb.reqs = nil
		f.fb.mu.Unlock()
		rep, err := f.p.BuildAll(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := rep.Layer("soe")
		req, _ := f.fb.request("soe")
		return l.InputDigest, req.SourceDateEpoch
	}
	none, e0 := inputsOf(func(c *Config) {})
	commit1, e1 := inputsOf(func(c *Config) { c.CommitTime = 1764000000 })
	commit2, _ := inputsOf(func(c *Config) { c.CommitTime = 1765000000 })
	asked, e3 := inputsOf(func(c *Config) { c.SourceDateEpoch = 1764000000; c.CommitTime = 1765000000 })
	if none == "" || none != commit1 || commit1 != commit2 {
		t.Errorf("the commit time changed the inputs: %s %s %s", none, commit1, commit2)
	}
	if asked == none {
		t.Error("an asked-for SOURCE_DATE_EPOCH did not change the inputs")
	}
	if e0 != 0 || e1 != 1764000000 || e3 != 1764000000 {
		t.Errorf("builder epochs %d %d %d", e0, e1, e3)
	}
}
