package registry

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/imagemode/imagemode/ci/internal/regtest"
)

// counting wraps the in-process registry and counts blob uploads and manifest writes.
type counting struct {
	h         http.Handler
	blobPuts  atomic.Int64
	manifests atomic.Int64
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, "/blobs/uploads/") && (r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch) {
		c.blobPuts.Add(1)
	}
	if strings.Contains(r.URL.Path, "/manifests/") && r.Method == http.MethodPut {
		c.manifests.Add(1)
	}
	c.h.ServeHTTP(w, r)
}

func startRegistry(t *testing.T) (*counting, string) {
	t.Helper()
	c := &counting{h: ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, strings.TrimPrefix(srv.URL, "http://")
}

func pushRandom(t *testing.T, ref string, labels map[string]string) v1.Hash {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Config.Labels = labels
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDigestTagLabels(t *testing.T) {
	ctx := t.Context()
	reg, host := startRegistry(t)
	repo := host + "/imagemode/soe"
	d := pushRandom(t, repo+":build-1", map[string]string{"io.imagemode.layer": "soe"})

	c := New(WithRetry(Retry{Steps: 1}))
	got, err := c.Digest(ctx, repo+":build-1")
	if err != nil {
		t.Fatal(err)
	}
	if got != d.String() {
		t.Fatalf("digest = %s, want %s", got, d)
	}

	blobsBefore := reg.blobPuts.Load()
	if err := c.Tag(ctx, DigestRef(repo, got), "sha-abc-centos-stream-9"); err != nil {
		t.Fatal(err)
	}
	if n := reg.blobPuts.Load() - blobsBefore; n != 0 {
		t.Errorf("tagging uploaded %d blobs, want 0", n)
	}
	again, err := c.Digest(ctx, repo+":sha-abc-centos-stream-9")
	if err != nil || again != got {
		t.Fatalf("tag points at %s (%v), want %s", again, err, got)
	}

	tags, err := c.Tags(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(tags, ",") != "build-1,sha-abc-centos-stream-9" {
		t.Errorf("tags = %v", tags)
	}
	labels, err := c.Labels(ctx, DigestRef(repo, got))
	if err != nil {
		t.Fatal(err)
	}
	if labels["io.imagemode.layer"] != "soe" {
		t.Errorf("labels = %v", labels)
	}
}

func TestNotFoundAndMissingRepo(t *testing.T) {
	ctx := t.Context()
	_, host := startRegistry(t)
	c := New(WithRetry(Retry{Steps: 1}))
	ok, err := c.Exists(ctx, host+"/nothing/here:v1")
	if err != nil || ok {
		t.Fatalf("Exists = %v, %v; want false, nil", ok, err)
	}
	tags, err := c.Tags(ctx, host+"/nothing/here")
	if err != nil || len(tags) != 0 {
		t.Fatalf("Tags of a missing repository = %v, %v", tags, err)
	}
	if _, err := c.Digest(ctx, host+"/nothing/here:v1"); err == nil || !strings.Contains(err.Error(), `resolving "`+host+`/nothing/here:v1"`) {
		t.Fatalf("Digest of a missing tag: %v", err)
	}
}

func TestParseRefRefusesShortNames(t *testing.T) {
	for _, ref := range []string{"ubuntu", "centos-bootc:stream9", "library/ubuntu:22.04"} {
		if _, err := ParseRef(ref); err == nil || !strings.Contains(err.Error(), "fully qualified") {
			t.Errorf("ParseRef(%q) = %v, want a fully-qualified error", ref, err)
		}
	}
	for _, ref := range []string{"quay.io/centos-bootc/centos-bootc:stream9", "localhost/x:y", "127.0.0.1:5000/a/b@sha256:" + strings.Repeat("a", 64)} {
		if _, err := ParseRef(ref); err != nil {
			t.Errorf("ParseRef(%q): %v", ref, err)
		}
	}
}

// flaky fails the first n requests with a 503.
type flaky struct {
	h    http.Handler
	left atomic.Int64
	seen atomic.Int64
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.seen.Add(1)
	if f.left.Add(-1) >= 0 {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	f.h.ServeHTTP(w, r)
}

func TestRetriesFollowSettings(t *testing.T) {
	ctx := t.Context()
	_, host := startRegistry(t)
	repo := host + "/imagemode/httpd"
	pushRandom(t, repo+":v1", nil)

	f := &flaky{h: httpProxyTo(t, host)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	proxied := strings.TrimPrefix(srv.URL, "http://") + "/imagemode/httpd:v1"

	f.left.Store(2)
	c := New(WithRetry(Retry{Steps: 3, Initial: time.Millisecond, Factor: 1, Statuses: []int{http.StatusServiceUnavailable}}))
	if _, err := c.Digest(ctx, proxied); err != nil {
		t.Fatalf("two 503s with three attempts must succeed: %v", err)
	}

	f.left.Store(100)
	f.seen.Store(0)
	c = New(WithRetry(Retry{Steps: 1, Statuses: []int{http.StatusServiceUnavailable}}))
	if _, err := c.Exists(ctx, proxied); err == nil {
		t.Fatal("a 503 without retries must fail")
	}
	if n := f.seen.Load(); n > 2 {
		t.Errorf("without retries the registry saw %d requests", n)
	}
}

func TestCredentialsForHost(t *testing.T) {
	c := New(WithCredentials("registry.example.com", "robot", "pw"), WithKeychain(authn.NewMultiKeychain()))
	c.RemoteOptions(t.Context())
	reg, err := name.NewRegistry("registry.example.com")
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.keychain.Resolve(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Username != "robot" || cfg.Password != "pw" {
		t.Errorf("auth = %+v", cfg)
	}
	other, _ := name.NewRegistry("quay.io")
	a, err = c.keychain.Resolve(other)
	if err != nil {
		t.Fatal(err)
	}
	if a != authn.Anonymous {
		t.Errorf("another host got %v, want anonymous", a)
	}
	if h := c.Hosts(); len(h) != 1 || h[0] != "registry.example.com" {
		t.Errorf("hosts = %v", h)
	}
}

func httpProxyTo(t *testing.T, host string) http.Handler {
	t.Helper()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Scheme = "http"
		r2.URL.Host = host
		r2.RequestURI = ""
		r2.Host = host
		resp, err := http.DefaultTransport.RoundTrip(r2)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32*1024)
		for {
			n, rerr := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
			}
			if rerr != nil {
				return
			}
		}
	})
}

func tarLayer(t *testing.T, files map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n, c := range files {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestReadFileTopDown(t *testing.T) {
	ctx := t.Context()
	_, host := startRegistry(t)
	c := New(WithRetry(Retry{Steps: 1}))
	push := func(tag string, layers ...v1.Layer) string {
		img, err := mutate.AppendLayers(empty.Image, layers...)
		if err != nil {
			t.Fatal(err)
		}
		ref := host + "/base/img:" + tag
		r, _ := name.ParseReference(ref)
		if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
			t.Fatal(err)
		}
		return ref
	}
	l1 := tarLayer(t, map[string]string{"./etc/containers/policy.json": "v1", "./etc/os-release": "x"})
	l2 := tarLayer(t, map[string]string{"etc/containers/policy.json": "v2"})
	del := tarLayer(t, map[string]string{"etc/containers/.wh.policy.json": ""})
	other := tarLayer(t, map[string]string{"usr/bin/tool": "t"})

	cases := []struct {
		ref  string
		want []byte
	}{
		{push("override", l1, l2, other), []byte("v2")},
		{push("base", l1, other), []byte("v1")},
		{push("deleted", l1, del), nil},
		{push("absent", other), nil},
	}
	for _, tc := range cases {
		got, err := c.ReadFile(ctx, tc.ref, "/etc/containers/policy.json")
		if err != nil {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.ref, got, tc.want)
		}
	}
}

// TestSetCreated: the same image rewritten twice to the same time gets the same digest, its layers untouched.
func TestSetCreated(t *testing.T) {
	host := regtest.Start(t, nil)
	ctx := t.Context()
	d, err := regtest.Push(ctx, host+"/a/img:build-1", 512, 2, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	c := New()
	at := time.Unix(1700000000, 0)
	d1, err := c.SetCreated(ctx, host+"/a/img@"+d, host+"/a/img:build-1", at)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := c.SetCreated(ctx, host+"/a/img@"+d1, host+"/a/img:build-2", at)
	if err != nil {
		t.Fatal(err)
	}
	if d1 == d || d1 != d2 {
		t.Errorf("digests %s → %s → %s; want a new one, then the same", d, d1, d2)
	}
	cfg, err := c.Config(ctx, host+"/a/img:build-1")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Created.Time.Equal(at) || cfg.Config.Labels["k"] != "v" {
		t.Errorf("created %v labels %v", cfg.Created, cfg.Config.Labels)
	}
	for _, h := range cfg.History {
		if !h.Created.Time.Equal(at) {
			t.Errorf("history entry created %v", h.Created)
		}
	}
	if got, err := c.Digest(ctx, host+"/a/img:build-2"); err != nil || got != d1 {
		t.Errorf("build-2 → %s, %v", got, err)
	}
	if _, err := c.SetCreated(ctx, host+"/a/img:notadigest", host+"/a/img:x", at); err == nil {
		t.Error("a tag was accepted as the source")
	}
}

func TestPlainHTTP(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost:5000": true, "127.0.0.1:5000": true, "10.87.0.1:5055": true, "192.168.1.4": true,
		"ghcr.io": false, "ttl.sh": false, "registry.example.com:5000": false,
	} {
		if got := PlainHTTP(host); got != want {
			t.Errorf("PlainHTTP(%q) = %v, want %v", host, got, want)
		}
	}
}
