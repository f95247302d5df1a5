//go:build integration

package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/tests/harness"
	"github.com/imagemode/imagemode/tests/standin"
)

const testCommit = "feedc0ffee0123456789abcdef0123456789abcd"

// buildStandin runs `imagemode build-all` on a containerfiles dir against the test registry.
func buildStandin(t *testing.T, dir, ns string, extra ...string) (harness.Result, *report.Report) {
	t.Helper()
	args := []string{"build-all", "--dir", dir, "--profile", "standin", "--base-image", env.StandinBase(t),
		"--registry", ns, "--commit", testCommit, "--run-id", "it1", "--json"}
	args = append(args, env.BuildahArgs()...)
	args = append(args, extra...)
	res := env.Run(t.Context(), args...)
	var rep *report.Report
	if strings.TrimSpace(res.Stdout) != "" {
		r, err := report.Parse([]byte(res.Stdout))
		if err != nil {
			t.Fatalf("parsing the report: %v\nstdout:\n%s\nstderr:\n%s", err, res.Stdout, res.Stderr)
		}
		rep = r
	}
	return res, rep
}

// TestStandinFamilyBuildsInOrder builds the stand-in family with buildah and checks the chain from the registry
// alone: every child's base-digest label is its parent's pushed digest, the candidate tags point at the built
// digests, and no build secret is left in any layer.
func TestStandinFamilyBuildsInOrder(t *testing.T) {
	ctx := t.Context()
	ns := env.Namespace(t)
	marker := "imagemode-entitlement-marker-7f3a9c"
	secretFile := filepath.Join(t.TempDir(), "entitlement.pem")
	if err := os.WriteFile(secretFile, []byte(marker+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, rep := buildStandin(t, standin.ContainerfilesDir(), ns, "--entitlement-cert", secretFile)
	if res.Err != nil {
		t.Fatalf("build-all failed: %v\n%s", res.Err, res.Stderr)
	}
	if rep == nil || !rep.Candidates || len(rep.Layers) != 4 {
		t.Fatalf("report: %+v", rep)
	}
	levels := map[string]int{"soe": 0, "httpd": 1, "database": 1, "homepage": 2}
	for _, l := range rep.Layers {
		if levels[l.Name] != l.Level {
			t.Errorf("%s built at level %d, want %d", l.Name, l.Level, levels[l.Name])
		}
	}
	// Level order in the log: soe pushed before any level-1 build starts, httpd pushed before homepage starts.
	assertBefore(t, res.Stderr, "soe: pushed", "httpd: building")
	assertBefore(t, res.Stderr, "soe: pushed", "database: building")
	assertBefore(t, res.Stderr, "httpd: pushed", "homepage: building")

	reg := registry.New()
	for _, l := range rep.Layers {
		labels, err := reg.Labels(ctx, l.Ref)
		if err != nil {
			t.Fatal(err)
		}
		wantBase := rep.BaseDigest
		if l.Parent != "" {
			parent, _ := rep.Layer(l.Parent)
			wantBase = parent.Digest
			pushed, err := reg.Digest(ctx, parent.Repository+":"+parent.RunTag)
			if err != nil {
				t.Fatal(err)
			}
			if pushed != wantBase {
				t.Errorf("%s: parent %s run tag points at %s, report says %s", l.Name, l.Parent, pushed, wantBase)
			}
		}
		if labels[layers.LabelBaseDigest] != wantBase {
			t.Errorf("%s: base-digest label %q, want its parent's pushed digest %q", l.Name, labels[layers.LabelBaseDigest], wantBase)
		}
		if labels[layers.LabelRevision] != testCommit || labels[layers.LabelLayer] != l.Name || labels[layers.LabelProfile] != "standin" {
			t.Errorf("%s: labels %v", l.Name, labels)
		}
		if labels["containers.bootc"] != "1" {
			t.Errorf("%s: lost the containers.bootc label of the base", l.Name)
		}
		cand, err := reg.Digest(ctx, l.CandidateRef())
		if err != nil || cand != l.Digest {
			t.Errorf("%s: candidate tag -> %s (%v), want %s", l.Name, cand, err, l.Digest)
		}
		assertNoMarkerInLayers(t, l.Ref, rep.BaseImage, marker)
	}
}

// TestFailureInLevelOneLeavesNoCandidateTag breaks the database Containerfile of a copy of the stand-in family:
// the run fails, and no layer gets a candidate tag (the SOE stays under its run-scoped tag only).
func TestFailureInLevelOneLeavesNoCandidateTag(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "containerfiles")
	if err := harness.CopyDir(standin.ContainerfilesDir(), dir); err != nil {
		t.Fatal(err)
	}
	cf := filepath.Join(dir, "database", "Containerfile")
	data, err := os.ReadFile(cf)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(data), "COPY files/ /", "COPY files/ /\nRUN echo 'simulated package failure' >&2 && false", 1)
	if err := os.WriteFile(cf, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t)
	res, rep := buildStandin(t, dir, ns)
	if res.ExitCode != 1 {
		t.Fatalf("exit code %d, want 1\n%s", res.ExitCode, res.Stderr)
	}
	if !strings.Contains(res.Stderr, `building layer "database"`) || !strings.Contains(res.Stderr, "simulated package failure") {
		t.Errorf("the error does not name the layer and show the build output:\n%s", res.Stderr)
	}
	if rep == nil || rep.Candidates {
		t.Fatalf("report must say no candidates: %+v", rep)
	}
	reg := registry.New()
	for _, layer := range []string{"soe", "httpd", "database", "homepage"} {
		tags, err := reg.Tags(ctx, ns+"/"+layer)
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range tags {
			if strings.HasPrefix(tg, "sha-") {
				t.Errorf("%s has candidate tag %s after a failed run", layer, tg)
			}
		}
		if layer == "soe" {
			// The run-scoped tag, and the inputs tag that lets later runs reuse the image: never a candidate.
			if len(tags) != 2 || tags[0] != "build-it1-standin" || !strings.HasPrefix(tags[1], "inputs-") {
				t.Errorf("soe tags = %v, want the run-scoped and the inputs tag only", tags)
			}
		}
		if layer == "homepage" && len(tags) != 0 {
			t.Errorf("homepage was pushed after level 1 failed: %v", tags)
		}
	}
}

func assertBefore(t *testing.T, log, first, second string) {
	t.Helper()
	i, j := strings.Index(log, first), strings.Index(log, second)
	if i < 0 || j < 0 || i > j {
		t.Errorf("log: %q (at %d) must come before %q (at %d)", first, i, second, j)
	}
}

func layersOf(t *testing.T, ref string) []v1.Layer {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// assertNoMarkerInLayers scans every layer blob of ref that the base image does not have for marker.
func assertNoMarkerInLayers(t *testing.T, ref, base, marker string) {
	t.Helper()
	inBase := map[v1.Hash]bool{}
	for _, l := range layersOf(t, base) {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		inBase[d] = true
	}
	for _, l := range layersOf(t, ref) {
		if d, err := l.Digest(); err != nil {
			t.Fatal(err)
		} else if inBase[d] {
			continue
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(rc)
		if err != nil {
			rc.Close()
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			// buildah leaves the empty mount-point directories (harmless: /run is a tmpfs at boot); a file there
			// would be the secret itself.
			if strings.HasPrefix(strings.TrimPrefix(h.Name, "./"), "run/secrets/") && h.Typeflag != tar.TypeDir {
				t.Errorf("%s: layer holds %s", ref, h.Name)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data, []byte(marker)) {
				t.Errorf("%s: the build secret is in the layer file %s", ref, h.Name)
			}
		}
		rc.Close()
	}
}
