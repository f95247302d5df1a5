// Package provenance writes and checks the SLSA v1 provenance of a layer: what it was built from (the
// Containerfile, the layer graph, the profile, the build arguments), on what (the source commit, the parent and
// base image digests) and by whom (the builder: a GitHub workflow, the CLI on a host, or the Dagger module).
package provenance

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/imagemode/imagemode/ci/report"
)

// PredicateType is SLSA provenance v1, as cosign names it (`--type slsaprovenance1`).
const PredicateType = "https://slsa.dev/provenance/v1"

// BuildType says how to read the external parameters: one layer of an imagemode layer graph.
const BuildType = "https://imagemode.dev/buildtypes/layer/v1"

// Builder ids when no GitHub workflow builds.
const (
	BuilderCLI    = "https://imagemode.dev/builders/cli"
	BuilderModule = "https://imagemode.dev/builders/dagger-module"
)

// Names of the resolved dependencies.
const (
	DepSource = "source"
	DepParent = "parent"
	DepBase   = "base"
)

// Provenance is the SLSA v1 predicate.
type Provenance struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition says what was built from what.
type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   ExternalParameters   `json:"externalParameters"`
	InternalParameters   InternalParameters   `json:"internalParameters"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies"`
}

// ExternalParameters are the inputs a user controls. Build secrets are never among them: they are mounted, not
// passed as arguments, and enter the input digest only as an HMAC.
type ExternalParameters struct {
	Layer         string            `json:"layer"`
	Profile       string            `json:"profile"`
	Containerfile File              `json:"containerfile"`
	Graph         File              `json:"layersFile"`
	BuildArgs     map[string]string `json:"buildArgs,omitempty"`
	Source        string            `json:"source,omitempty"`
}

// File is a file of the source and its digest (sha256:<hex>).
type File struct {
	Path   string `json:"path"`
	Digest string `json:"digest"`
}

// InternalParameters are what imagemode derived.
type InternalParameters struct {
	// InputDigest is the layer's input digest (reuse looks it up).
	InputDigest string `json:"inputDigest"`
	Registry    string `json:"registry"`
}

// ResourceDescriptor is an in-toto resource descriptor.
type ResourceDescriptor struct {
	Name   string            `json:"name"`
	URI    string            `json:"uri,omitempty"`
	Digest map[string]string `json:"digest"`
}

// RunDetails says who built it and when.
type RunDetails struct {
	Builder  Builder  `json:"builder"`
	Metadata Metadata `json:"metadata"`
}

// Builder is the build platform.
type Builder struct {
	ID string `json:"id"`
}

// Metadata names the run.
type Metadata struct {
	InvocationID string    `json:"invocationId"`
	StartedOn    time.Time `json:"startedOn"`
	FinishedOn   time.Time `json:"finishedOn,omitzero"`
}

// BuilderID is the builder of this process: the GitHub workflow (its ref, which names the file and the branch or
// tag) on Actions, $IMAGEMODE_BUILDER_ID when set (the Dagger module sets it), else the CLI.
func BuilderID() string {
	if ref := os.Getenv("GITHUB_WORKFLOW_REF"); ref != "" {
		server := os.Getenv("GITHUB_SERVER_URL")
		if server == "" {
			server = "https://github.com"
		}
		return strings.TrimSuffix(server, "/") + "/" + ref
	}
	if id := os.Getenv("IMAGEMODE_BUILDER_ID"); id != "" {
		return id
	}
	return BuilderCLI
}

// ErrNotBuilt says a layer was reused: it keeps the provenance of the run that built it.
var ErrNotBuilt = errors.New("the layer was reused, not built: it keeps the provenance of the run that built it")

// New returns the provenance of layer l of the run rep, built by builderID.
func New(rep *report.Report, l report.Layer, builderID string) (Provenance, error) {
	if l.Status != report.StatusBuilt {
		return Provenance{}, fmt.Errorf("layer %q: %w", l.Name, ErrNotBuilt)
	}
	for _, c := range [][2]string{{"commit", rep.Commit}, {"digest", l.Digest}, {"parent digest", l.ParentDigest},
		{"base digest", rep.BaseDigest}, {"Containerfile digest", l.ContainerfileDigest}, {"layer graph digest", rep.GraphDigest}} {
		if c[1] == "" {
			return Provenance{}, fmt.Errorf("layer %q: the report has no %s (a report of imagemode before provenance, or a candidate report)", l.Name, c[0])
		}
	}
	if builderID == "" {
		builderID = BuilderID()
	}
	deps := []ResourceDescriptor{{Name: DepSource, URI: sourceURI(rep.SourceURL, rep.Commit), Digest: map[string]string{"gitCommit": rep.Commit}}}
	if l.Parent != "" {
		deps = append(deps, descriptor(DepParent, l.BaseName, l.ParentDigest))
	}
	deps = append(deps, descriptor(DepBase, rep.BaseImage, rep.BaseDigest))
	p := Provenance{
		BuildDefinition: BuildDefinition{
			BuildType: BuildType,
			ExternalParameters: ExternalParameters{
				Layer: l.Name, Profile: rep.Profile,
				Containerfile: File{Path: l.Containerfile, Digest: l.ContainerfileDigest},
				Graph:         File{Path: rep.GraphFile, Digest: rep.GraphDigest},
				BuildArgs:     rep.BuildArgs, Source: rep.SourceURL,
			},
			InternalParameters:   InternalParameters{InputDigest: l.InputDigest, Registry: rep.Registry},
			ResolvedDependencies: deps,
		},
		RunDetails: RunDetails{
			Builder:  Builder{ID: builderID},
			Metadata: Metadata{InvocationID: rep.RunID, StartedOn: rep.Started.UTC()},
		},
	}
	if rep.DurationMS > 0 {
		p.RunDetails.Metadata.FinishedOn = rep.Started.Add(time.Duration(rep.DurationMS) * time.Millisecond).UTC()
	}
	return p, nil
}

func sourceURI(url, commit string) string {
	if url == "" {
		return ""
	}
	return "git+" + strings.TrimSuffix(url, "/") + "@" + commit
}

// descriptor names an image by digest: oci://<name without tag or digest>.
func descriptor(depName, image, digest string) ResourceDescriptor {
	repo := image
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	alg, hex, _ := strings.Cut(digest, ":")
	return ResourceDescriptor{Name: depName, URI: "oci://" + repo, Digest: map[string]string{alg: hex}}
}

// JSON is the predicate's encoding.
func (p Provenance) JSON() ([]byte, error) { return json.Marshal(p) }

// Parse reads a predicate and checks that it is imagemode's layer provenance.
func Parse(data []byte) (Provenance, error) {
	var p Provenance
	if err := json.Unmarshal(data, &p); err != nil {
		return p, fmt.Errorf("not SLSA provenance JSON: %w", err)
	}
	if p.BuildDefinition.BuildType != BuildType {
		return p, fmt.Errorf("build type %q, not %s", p.BuildDefinition.BuildType, BuildType)
	}
	if p.BuildDefinition.ExternalParameters.Layer == "" || p.RunDetails.Builder.ID == "" {
		return p, errors.New("no layer or no builder id")
	}
	return p, nil
}

// Dependency returns the digest (sha256:<hex>, or the git commit for the source) of a resolved dependency; "" when
// there is none.
func (p Provenance) Dependency(depName string) string {
	for _, d := range p.BuildDefinition.ResolvedDependencies {
		if d.Name != depName {
			continue
		}
		if c := d.Digest["gitCommit"]; c != "" {
			return c
		}
		if h := d.Digest["sha256"]; h != "" {
			return "sha256:" + h
		}
	}
	return ""
}

// Expect is what a promotion requires of a layer's provenance.
type Expect struct {
	Layer   string
	Profile string
	// Commit is the commit the image was built at (the tag's, or for a reused layer its revision label).
	Commit string
	// ParentDigest is the digest of the parent being promoted with it ("" for a root layer).
	ParentDigest string
	// BaseDigest is the base image digest of the chain's root layer.
	BaseDigest string
}

// Check says why p does not describe the layer e expects ("" when it does).
func (p Provenance) Check(e Expect) string {
	ep := p.BuildDefinition.ExternalParameters
	switch {
	case ep.Layer != e.Layer:
		return fmt.Sprintf("its provenance is of layer %q", ep.Layer)
	case ep.Profile != e.Profile:
		return fmt.Sprintf("its provenance is of profile %q", ep.Profile)
	case p.Dependency(DepSource) != e.Commit:
		return fmt.Sprintf("its provenance names commit %s, not %s", orNone(p.Dependency(DepSource)), e.Commit)
	case p.Dependency(DepParent) != e.ParentDigest:
		return fmt.Sprintf("its provenance names parent %s, but the parent being promoted is %s", orNone(p.Dependency(DepParent)), orNone(e.ParentDigest))
	case p.Dependency(DepBase) != e.BaseDigest:
		return fmt.Sprintf("its provenance names base %s, but the chain was built on %s", orNone(p.Dependency(DepBase)), orNone(e.BaseDigest))
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
