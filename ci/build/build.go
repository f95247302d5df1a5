// Package build defines the one thing the pipeline asks of an image builder: build this Containerfile with these
// arguments, labels and secrets, push the result to this tag and say its digest. In this process: buildah
// (ci/build/buildah). The Dagger module builds with the engine outside the process, through step files
// (ci/buildstep, pipeline.Begin/Advance).
package build

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Request is one image build.
type Request struct {
	// Layer names the image (used in logs and errors).
	Layer string
	// ContextDir is the build context folder, slash-separated and relative to the builder's source root.
	ContextDir string
	// Files are the context files the build may see, relative to ContextDir (already filtered by the
	// ignore file). Nothing else of the folder is sent.
	Files []string
	// ExtraFiles are generated files added to the context (path relative to the context → content).
	ExtraFiles map[string][]byte
	// Containerfile is relative to ContextDir.
	Containerfile string
	// BuildArgs are passed as --build-arg; BASE_IMAGE is always among them.
	BuildArgs map[string]string
	// Labels are set on the image configuration.
	Labels map[string]string
	// Target is where the image is pushed: registry/repository:tag.
	Target string
	// SourceDateEpoch, when non-zero, asks the builder to normalise timestamps to it (reproducible layers).
	SourceDateEpoch int64
}

// Result says what was pushed.
type Result struct {
	// Digest is the manifest digest (sha256:...).
	Digest string
	// Ref is the repository@digest reference of the pushed image.
	Ref string
}

// Builder builds and pushes one image.
type Builder interface {
	Build(ctx context.Context, req Request) (Result, error)
}

// Func adapts a function to Builder (tests use it for fakes).
type Func func(ctx context.Context, req Request) (Result, error)

// Build calls f.
func (f Func) Build(ctx context.Context, req Request) (Result, error) { return f(ctx, req) }

var argNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks a request before a builder spends time on it.
func (r Request) Validate() error {
	if r.Layer == "" {
		return fmt.Errorf("build request without a layer name")
	}
	if r.Containerfile == "" {
		return fmt.Errorf("layer %q: no Containerfile", r.Layer)
	}
	if !strings.Contains(r.Target, ":") || strings.Contains(r.Target, "@") {
		return fmt.Errorf("layer %q: push target %q must be a tag reference", r.Layer, r.Target)
	}
	for k := range r.BuildArgs {
		if !argNameRE.MatchString(k) {
			return fmt.Errorf("layer %q: build argument name %q is not valid", r.Layer, k)
		}
	}
	return nil
}

// SortedKeys returns the keys of m in order (builders pass arguments and labels deterministically).
func SortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// FileReader is implemented by builders that can read a file of an image they would pull anyway (the Dagger
// engine reads the base image's policy.json from its own cache). The pipeline falls back to the registry.
type FileReader interface {
	// ReadImageFile returns the file at path in the image ref, or (nil, nil) when the image has none.
	ReadImageFile(ctx context.Context, ref, path string) ([]byte, error)
}
