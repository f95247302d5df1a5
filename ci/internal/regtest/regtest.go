// Package regtest gives unit tests an in-process registry (go-containerregistry's pkg/registry) and small random
// images to push into it.
package regtest

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagemode/imagemode/ci/sbom/sbomtest"
)

// Handler is a fresh in-process registry handler (quiet).
func Handler() http.Handler {
	return ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
}

// Start serves h (Handler() when nil) for the test's lifetime and returns its host:port.
func Start(t testing.TB, h http.Handler) string {
	t.Helper()
	if h == nil {
		h = Handler()
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Push writes a random image (size bytes per layer, layers layers) with labels to ref and returns its digest.
func Push(ctx context.Context, ref string, size int64, layers int64, labels map[string]string) (string, error) {
	img, err := random.Image(size, layers)
	if err != nil {
		return "", err
	}
	return push(ctx, ref, img, labels)
}

// PushPackages writes an image with labels to ref whose filesystem holds a Debian os-release and a dpkg database
// listing packages (name → version), plus a random layer; it returns the image's digest.
func PushPackages(ctx context.Context, ref string, labels map[string]string, packages map[string]string) (string, error) {
	l, err := sbomtest.DpkgLayer(packages)
	if err != nil {
		return "", err
	}
	img, err := random.Image(64, 1)
	if err != nil {
		return "", err
	}
	if img, err = mutate.AppendLayers(img, l); err != nil {
		return "", err
	}
	return push(ctx, ref, img, labels)
}

func push(ctx context.Context, ref string, img v1.Image, labels map[string]string) (string, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cfg.Config.Labels = labels
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
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
	if err != nil {
		return "", err
	}
	return d.String(), nil
}
