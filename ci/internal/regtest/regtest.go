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
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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
