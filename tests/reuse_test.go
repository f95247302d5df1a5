//go:build integration

package tests

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/tests/faultproxy"
	"github.com/imagemode/imagemode/tests/harness"
	"github.com/imagemode/imagemode/tests/standin"
)

// reuseEnv builds the stand-in family through a counting proxy, signing what it builds.
type reuseEnv struct {
	t     testing.TB
	proxy *faultproxy.Proxy
	ns    string
	key   keyPair
	dir   string
	run   int
}

func newReuseEnv(t testing.TB) *reuseEnv {
	t.Helper()
	proxy := faultproxy.Start(env.Registry, 0, 1)
	t.Cleanup(proxy.Close)
	dir := filepath.Join(t.TempDir(), "containerfiles")
	if err := harness.CopyDir(standin.ContainerfilesDir(), dir); err != nil {
		t.Fatal(err)
	}
	ns := proxy.Addr() + "/" + strings.TrimPrefix(env.Namespace(t), env.Registry+"/")
	return &reuseEnv{t: t, proxy: proxy, ns: ns, key: generateKeyTB(t, keyPassword), dir: dir}
}

// build runs build-all (fresh buildah storage when cold: a new CI runner) and signs the result; it returns the
// report and the blob uploads and bytes the run caused.
func (r *reuseEnv) build(cold bool, extra ...string) (*report.Report, int64, int64) {
	t := r.t
	t.Helper()
	r.run++
	b0, by0, _ := r.proxy.Uploads()
	args := []string{"build-all", "--dir", r.dir, "--profile", "standin", "--base-image", env.StandinBase(t),
		"--registry", r.ns, "--commit", strings.Repeat(string(rune('a'+r.run%6)), 40), "--run-id", "reuse" + string(rune('a'+r.run)),
		"--public-key", r.key.pub, "--source-date-epoch", "1764000000", "--json",
		"--containers-conf", env.ContainersConf}
	if cold {
		root := t.TempDir()
		args = append(args, "--buildah-root", filepath.Join(root, "storage"), "--buildah-runroot", filepath.Join(root, "run"))
	} else {
		args = append(args, "--buildah-root", env.BuildahRoot, "--buildah-runroot", env.BuildahRunRoot)
	}
	res := env.Run(t.Context(), append(args, extra...)...)
	if res.Err != nil {
		t.Fatalf("build-all: %v\n%s", res.Err, res.Stderr)
	}
	rep, err := report.Parse([]byte(res.Stdout))
	if err != nil {
		t.Fatal(err)
	}
	b1, by1, _ := r.proxy.Uploads()
	var refs []string
	for _, l := range rep.Layers {
		if l.Status == report.StatusBuilt {
			refs = append(refs, "--image", l.Ref)
		}
	}
	if len(refs) > 0 {
		s := env.RunEnv(t.Context(), []string{"IMAGEMODE_KEY_PASSWORD=" + keyPassword}, append([]string{"sign", "--key", r.key.priv}, refs...)...)
		if s.Err != nil {
			t.Fatalf("sign: %v\n%s", s.Err, s.Stderr)
		}
	}
	return rep, b1 - b0, by1 - by0
}

func (r *reuseEnv) edit(file, from, to string) {
	r.t.Helper()
	p := filepath.Join(r.dir, file)
	data, err := os.ReadFile(p)
	if err != nil {
		r.t.Fatal(err)
	}
	if !strings.Contains(string(data), from) {
		r.t.Fatalf("%s lacks %q", file, from)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(data), from, to, 1)), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func builtLayers(rep *report.Report) string {
	var out []string
	for _, l := range rep.Layers {
		if l.Status == report.StatusBuilt {
			out = append(out, l.Name)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func generateKeyTB(t testing.TB, password string) keyPair {
	t.Helper()
	dir := t.TempDir()
	res := env.RunEnv(t.Context(), []string{"IMAGEMODE_KEY_PASSWORD=" + password}, "generate-key", "--output-prefix", filepath.Join(dir, "cosign"))
	if res.Err != nil {
		t.Fatalf("generate-key: %v\n%s", res.Err, res.Stderr)
	}
	return keyPair{priv: filepath.Join(dir, "cosign.key"), pub: filepath.Join(dir, "cosign.pub"), dir: dir}
}

// TestReuseAgainstTheRegistry: the first run builds all four layers; an unchanged second run (cold builder
// storage) reuses all four with no build and no blob upload; a homepage-only change rebuilds only homepage; a
// database-only change only database; an SOE change everything.
func TestReuseAgainstTheRegistry(t *testing.T) {
	r := newReuseEnv(t)
	first, _, _ := r.build(true)
	if got := builtLayers(first); got != "database,homepage,httpd,soe" {
		t.Fatalf("first run built %q", got)
	}
	second, blobs, bytes := r.build(true)
	if got := builtLayers(second); got != "" {
		t.Errorf("an unchanged run built %q", got)
	}
	if blobs != 0 || bytes != 0 {
		t.Errorf("an unchanged run uploaded %d blobs (%d bytes)", blobs, bytes)
	}
	for _, l := range second.Layers {
		prev, _ := first.Layer(l.Name)
		if l.Status != report.StatusReused || l.Digest != prev.Digest {
			t.Errorf("%s: %s %s, want reused %s", l.Name, l.Status, l.Digest, prev.Digest)
		}
	}
	r.edit("homepage/html/index.html", "Boot every image", "Boot and test every image")
	third, _, _ := r.build(true)
	if got := builtLayers(third); got != "homepage" {
		t.Errorf("a homepage-only change built %q", got)
	}
	r.edit("database/files/etc/mysql/mariadb.conf.d/90-imagemode.cnf", "skip-name-resolve", "skip-name-resolve\nmax_connections = 200")
	fourth, _, _ := r.build(true)
	if got := builtLayers(fourth); got != "database" {
		t.Errorf("a database-only change built %q", got)
	}
	r.edit("soe/files/etc/sudoers.d/wheel", "NOPASSWD", "NOPASSWD:SETENV")
	fifth, _, _ := r.build(true)
	if got := builtLayers(fifth); got != "database,homepage,httpd,soe" {
		t.Errorf("an SOE change built %q", got)
	}
}

// layerSizes returns the compressed size of every blob (layers and config) of a manifest.
func layerSizes(t testing.TB, ref string) map[string]int64 {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{m.Config.Digest.String(): m.Config.Size}
	for _, l := range m.Layers {
		out[l.Digest.String()] = l.Size
	}
	return out
}

// download is the bytes a host following oldRef downloads to move to newRef: blobs newRef has and oldRef lacks.
func download(t testing.TB, oldRef, newRef string) int64 {
	t.Helper()
	old := layerSizes(t, oldRef)
	var n int64
	for d, s := range layerSizes(t, newRef) {
		if _, ok := old[d]; !ok {
			n += s
		}
	}
	return n
}

// BenchmarkHomepageChangeDownload prints P6 for a homepage-only change after a cold-cache run: bytes a host
// downloads (blobs of the new homepage manifest the old one lacks) / bytes it would download had only the homepage
// layer been rebuilt on a warm cache (the new manifest's blobs beyond its httpd parent's). Goal ≤ 1.05. For
// contrast it also prints the ratio without reuse (every layer rebuilt from a cold cache), and whether a forced
// rebuild of the unchanged SOE with the same SOURCE_DATE_EPOCH keeps its digest (buildah --timestamp).
func BenchmarkHomepageChangeDownload(b *testing.B) {
	for b.Loop() {
		r := newReuseEnv(b)
		first, _, _ := r.build(true)
		r.edit("homepage/html/index.html", "Boot every image", "Boot and test every image")
		second, _, _ := r.build(true)
		oldHP, _ := first.Layer("homepage")
		newHP, _ := second.Layer("homepage")
		newHTTPD, _ := second.Layer("httpd")
		actual := download(b, oldHP.Ref, newHP.Ref)
		ideal := download(b, newHTTPD.Ref, newHP.Ref)
		b.ReportMetric(float64(actual)/float64(ideal), "P6")
		b.ReportMetric(float64(actual), "download-bytes")

		r.edit("homepage/html/index.html", "Boot and test every image", "Boot, test and sign every image")
		third, _, _ := r.build(true, "--reuse=false")
		newHP3, _ := third.Layer("homepage")
		newHTTPD3, _ := third.Layer("httpd")
		b.ReportMetric(float64(download(b, newHP.Ref, newHP3.Ref))/float64(download(b, newHTTPD3.Ref, newHP3.Ref)), "P6-without-reuse")

		soe1, _ := third.Layer("soe")
		fourth, _, _ := r.build(false, "--reuse=false", "--refresh", "all", "--commit", third.Commit)
		soe2, _ := fourth.Layer("soe")
		same := 0.0
		if soe1.Digest == soe2.Digest {
			same = 1
		}
		b.ReportMetric(same, "soe-rebuild-same-digest")
	}
}

// BenchmarkHostNoopBuildAll prints, for the host CLI (buildah), the time of an unchanged build-all over a cold one
// (fresh builder storage, a new runner's): noop/cold, goal ≤ 0.10. The cold run is signed as main.yml signs every
// run, so the no-op reuses every layer by signature; its digests must be the cold run's. Times are the runs' own
// (the report's duration: from the start of build-all to its report).
func BenchmarkHostNoopBuildAll(b *testing.B) {
	for b.Loop() {
		r := newReuseEnv(b)
		cold, _, _ := r.build(true)
		noop, _, _ := r.build(true, "--commit", cold.Commit)
		for _, l := range cold.Layers {
			if n, _ := noop.Layer(l.Name); n.Digest != l.Digest || n.Status != report.StatusReused {
				b.Fatalf("%s: the no-op gave %s (%s), the cold run %s", l.Name, n.Digest, n.Status, l.Digest)
			}
		}
		b.ReportMetric(float64(noop.DurationMS)/float64(cold.DurationMS), "noop/cold")
		b.ReportMetric(float64(noop.DurationMS)/1000, "noop-s")
		b.ReportMetric(float64(cold.DurationMS)/1000, "cold-s")
	}
}
