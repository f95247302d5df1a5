// Package report holds the run report: for every layer of a run, what was built (or reused), where it was pushed,
// its digest and the digests it was built on. Later stages (signing, smoke tests, promotion) read digests from it;
// nothing downstream depends on tags.
package report

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// Version is the report format version.
const Version = 1

// Layer statuses.
const (
	StatusBuilt  = "built"
	StatusReused = "reused"
)

// Report describes one pipeline run for one profile.
type Report struct {
	Version      int       `json:"version"`
	RunID        string    `json:"runId"`
	Commit       string    `json:"commit"`
	Registry     string    `json:"registry"`
	Profile      string    `json:"profile"`
	ProfileMajor int       `json:"profileMajor,omitempty"`
	BaseImage    string    `json:"baseImage"`
	BaseDigest   string    `json:"baseDigest"`
	Started      time.Time `json:"started"`
	DurationMS   int64     `json:"durationMs"`
	// Candidates is true once every layer's candidate tag was written (only after every level succeeded).
	Candidates bool    `json:"candidates"`
	Layers     []Layer `json:"layers"`
	// Build inputs named in each built layer's provenance: the layer graph file (as --dir names it) and its digest,
	// the extra build arguments (never secrets) and the source repository.
	GraphFile   string            `json:"graphFile,omitempty"`
	GraphDigest string            `json:"graphDigest,omitempty"`
	BuildArgs   map[string]string `json:"buildArgs,omitempty"`
	SourceURL   string            `json:"sourceUrl,omitempty"`
}

// Layer is one image of the run.
type Layer struct {
	Name   string `json:"name"`
	Parent string `json:"parent,omitempty"`
	Level  int    `json:"level"`
	// Repository is registry/name.
	Repository string `json:"repository"`
	// Digest is the manifest digest; Ref is Repository@Digest.
	Digest string `json:"digest"`
	Ref    string `json:"ref"`
	// RunTag is the run-scoped tag the image was pushed under; CandidateTag the tag written when the run succeeded.
	RunTag       string `json:"runTag"`
	CandidateTag string `json:"candidateTag"`
	// ParentDigest is the digest the image was built FROM (the parent layer's, or the base image's for the root).
	ParentDigest string `json:"parentDigest"`
	BaseName     string `json:"baseName"`
	Status       string `json:"status"`
	ReusedFrom   string `json:"reusedFrom,omitempty"`
	InputDigest  string `json:"inputDigest,omitempty"`
	DurationMS   int64  `json:"durationMs"`
	// Containerfile is the layer's Containerfile (as --dir names it) and ContainerfileDigest the sha256 of its content.
	Containerfile       string `json:"containerfile,omitempty"`
	ContainerfileDigest string `json:"containerfileDigest,omitempty"`
}

// CandidateRef is Repository:CandidateTag.
func (l Layer) CandidateRef() string { return l.Repository + ":" + l.CandidateTag }

// Layer returns the named layer.
func (r *Report) Layer(name string) (Layer, bool) {
	for _, l := range r.Layers {
		if l.Name == name {
			return l, true
		}
	}
	return Layer{}, false
}

// JSON encodes the report, indented.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the report: %w", err)
	}
	return append(b, '\n'), nil
}

// Parse decodes a report and checks its version.
func Parse(data []byte) (*Report, error) {
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decoding the report: %w", err)
	}
	if r.Version != Version {
		return nil, fmt.Errorf("report version %d, this imagemode reads version %d", r.Version, Version)
	}
	return &r, nil
}

// Table renders the report for people: one row per layer.
func (r *Report) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s  commit %s  profile %s  base %s\n", r.RunID, short(r.Commit, 12), r.Profile, baseRef(r.BaseImage, r.BaseDigest))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LAYER\tSTATUS\tREF\tDIGEST\tPARENT DIGEST\tBASE DIGEST\tPROFILE\tDURATION")
	for _, l := range r.Layers {
		ref := l.CandidateRef()
		if !r.Candidates {
			ref = l.Repository + ":" + l.RunTag
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Name, l.Status, ref, shortDigest(l.Digest),
			shortDigest(l.ParentDigest), shortDigest(r.BaseDigest), r.Profile, (time.Duration(l.DurationMS) * time.Millisecond).Round(100*time.Millisecond))
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(&b, "(table: %v)\n", err)
	}
	if !r.Candidates {
		b.WriteString("candidate tags: not written (the run did not complete)\n")
	}
	return b.String()
}

// baseRef names the base image with its digest once: a --base-image given by digest already carries it.
func baseRef(image, digest string) string {
	name, pinned, ok := strings.Cut(image, "@")
	if !ok {
		return image + "@" + shortDigest(digest)
	}
	if digest != "" && pinned != digest {
		return name + "@" + shortDigest(pinned) + " (resolved " + shortDigest(digest) + ")"
	}
	return name + "@" + shortDigest(pinned)
}

// CriticalPath is the longest chain of parent layers, by the sum of their build durations: the least time a
// run building every layer takes however many run at once.
func (r *Report) CriticalPath() time.Duration {
	byName := map[string]Layer{}
	for _, l := range r.Layers {
		byName[l.Name] = l
	}
	memo := map[string]int64{}
	var chain func(name string, depth int) int64
	chain = func(name string, depth int) int64 {
		if v, ok := memo[name]; ok {
			return v
		}
		l, ok := byName[name]
		if !ok || depth > len(byName) {
			return 0
		}
		v := l.DurationMS + chain(l.Parent, depth+1)
		memo[name] = v
		return v
	}
	var longest int64
	for _, l := range r.Layers {
		longest = max(longest, chain(l.Name, 0))
	}
	return time.Duration(longest) * time.Millisecond
}

func shortDigest(d string) string {
	if d == "" {
		return "-"
	}
	algo, hex, ok := strings.Cut(d, ":")
	if !ok {
		return short(d, 19)
	}
	return algo + ":" + short(hex, 12)
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
