// Package buildstep is the exchange between the pipeline and a builder outside its process: the Dagger module,
// which builds layers with the engine (DockerBuild, Publish) while the project's CLI decides what to build.
//
// The CLI writes a step file: the layers to build now (one level of the layer graph, minus the layers it reused)
// and its own progress. The builder builds and pushes those layers, writes their digests (or errors) into the
// step file's results and hands the whole file back to the CLI, which checks what was pushed, prepares the next
// level and writes the next step. The run is over when a step carries the report (with an error when it failed).
//
// The package has no dependencies beyond the standard library and the report, so that the module links it
// without linking the pipeline.
package buildstep

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/imagemode/imagemode/ci/report"
)

// Version is the step file format.
const Version = 1

// Build is one layer for the builder to build and push.
type Build struct {
	// Layer names the layer (logs, errors, results).
	Layer string `json:"layer"`
	// ContextDir is the build context, slash-separated and relative to the containerfiles directory.
	ContextDir string `json:"contextDir"`
	// Files are the only files of ContextDir the build may see (the ignore file already applied).
	Files []string `json:"files"`
	// Context holds those files themselves (path relative to the context, mode, contents): the builder makes the
	// build context from them, never from a directory of its own. (Dagger 1.0.0-beta.10 re-reads a directory
	// argument from the module's working directory when it publishes what was built from it.)
	Context []ContextFile `json:"context,omitempty"`
	// ExtraFiles are written into the context over what Files hold (path relative to the context → content):
	// generated files (the host trust policy) and, where a secret the Containerfile mounts was not given, the
	// Containerfile without that mount.
	ExtraFiles map[string]string `json:"extraFiles,omitempty"`
	// Containerfile is relative to ContextDir.
	Containerfile string `json:"containerfile"`
	// BuildArgs are the build arguments (BASE_IMAGE: the parent's digest; SOURCE_DATE_EPOCH when asked for).
	BuildArgs map[string]string `json:"buildArgs"`
	// Labels are set on the built image.
	Labels map[string]string `json:"labels"`
	// Secrets are the ids of the build secrets to pass (the ones the run was given).
	Secrets []string `json:"secrets,omitempty"`
	// Target is where the image is pushed: registry/repository:tag.
	Target string `json:"target"`
}

// ContextFile is one file of a build context.
type ContextFile struct {
	Path string `json:"path"`
	// Mode is the file's permission bits (0644, 0755).
	Mode uint32 `json:"mode"`
	Data []byte `json:"data"`
}

// Result is what the builder did with one Build.
type Result struct {
	Layer string `json:"layer"`
	// Digest is the manifest digest of the pushed image.
	Digest string `json:"digest,omitempty"`
	// Error is why the build or the push failed (the builder's own message).
	Error string `json:"error,omitempty"`
}

// Credential names the registry host a credential of the run belongs to: the builder pushes to and pulls from
// it with that credential.
type Credential struct {
	// For is "registry" (the --registry credential) or "base" (the base image's registry).
	For  string `json:"for"`
	Host string `json:"host"`
}

// Credential kinds.
const (
	ForRegistry = "registry"
	ForBase     = "base"
)

// File is a step file.
type File struct {
	Version int `json:"version"`
	// RunID is the run's id: every later step takes it (--run-id), with the same arguments as the first.
	RunID string `json:"runId"`
	// Builds are the layers to build now; they do not depend on each other. Empty once the run is over.
	Builds []Build `json:"builds,omitempty"`
	// Jobs is how many Builds may run at once (0: all).
	Jobs int `json:"jobs,omitempty"`
	// Credentials say which host each credential the run was given is for.
	Credentials []Credential `json:"credentials,omitempty"`
	// Results are the builder's, one per Build; it writes them before handing the file back.
	Results []Result `json:"results,omitempty"`
	// Report is set once the run is over: the whole report, or what was pushed before Error stopped it.
	Report *report.Report `json:"report,omitempty"`
	Error  string         `json:"error,omitempty"`
	// Progress is the pipeline's state between steps; the builder hands it back as it got it.
	Progress json.RawMessage `json:"progress,omitempty"`
}

// Over says whether the run is over (no more builds).
func (f *File) Over() bool { return f.Report != nil }

// Parse reads a step file and checks that it is one this version writes.
func Parse(data []byte) (*File, error) {
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("reading the step file: %w", err)
	}
	if f.Version != Version {
		return nil, fmt.Errorf("step file version %d, want %d (the module and the CLI come from different versions)", f.Version, Version)
	}
	if f.Report == nil && len(f.Builds) == 0 {
		return nil, errors.New("the step file has neither builds nor a report")
	}
	seen := map[string]bool{}
	for _, b := range f.Builds {
		if b.Layer == "" || b.Target == "" || b.Containerfile == "" {
			return nil, fmt.Errorf("the step file has a build without layer, target or Containerfile: %+v", b)
		}
		if seen[b.Layer] {
			return nil, fmt.Errorf("the step file builds layer %q twice", b.Layer)
		}
		seen[b.Layer] = true
	}
	return &f, nil
}

// JSON encodes the file.
func (f *File) JSON() ([]byte, error) {
	f.Version = Version
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the step file: %w", err)
	}
	return b, nil
}

// CheckResults says whether the results answer the builds exactly: one per build, each with a digest or an error.
func (f *File) CheckResults() error {
	want := map[string]bool{}
	for _, b := range f.Builds {
		want[b.Layer] = true
	}
	got := map[string]bool{}
	for _, r := range f.Results {
		if !want[r.Layer] {
			return fmt.Errorf("the step file has a result for layer %q, which it did not ask to build", r.Layer)
		}
		if got[r.Layer] {
			return fmt.Errorf("the step file has two results for layer %q", r.Layer)
		}
		if (r.Digest == "") == (r.Error == "") {
			return fmt.Errorf("the result for layer %q needs a digest or an error, not both or neither", r.Layer)
		}
		got[r.Layer] = true
	}
	var missing []string
	for l := range want {
		if !got[l] {
			missing = append(missing, l)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		return fmt.Errorf("the step file has no result for %v", missing)
	}
	return nil
}

// SortedKeys returns the keys of m in order (builders pass arguments, labels and files deterministically).
func SortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
