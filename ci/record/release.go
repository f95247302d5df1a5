package record

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// ReleasePredicateType is the in-toto predicate type of release records.
const ReleasePredicateType = "https://imagemode.dev/attestations/release/v1"

// ReleaseLayer is one layer of a release: its digest and the layer it is built on.
type ReleaseLayer struct {
	Layer  string `json:"layer"`
	Parent string `json:"parent,omitempty"`
	Digest string `json:"digest"`
}

// Release is the signed account of one promotion of one profile: the release version, the commit, the run record it
// verified and every layer's digest. Promotion attests it on the release's root digest; the floating tags follow
// only exact-tag sets a valid release record describes.
type Release struct {
	Version int `json:"version"`
	// Release is the version X.Y.Z[-pre] (without the v of the git tag).
	Release string `json:"release"`
	Tag     string `json:"tag"`
	Commit  string `json:"commit"`
	Profile string `json:"profile"`
	// RunID and RunRecord are the run whose signed record promotion verified and the digest of that record's
	// statement predicate.
	RunID     string         `json:"runId"`
	RunRecord string         `json:"runRecord"`
	Created   time.Time      `json:"created"`
	Layers    []ReleaseLayer `json:"layers"`
}

// ParseRelease decodes a release record strictly: anything missing, unknown or malformed is an error.
func ParseRelease(data []byte) (Release, error) {
	var r Release
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Release{}, fmt.Errorf("decoding a release record: %w", err)
	}
	if dec.More() {
		return Release{}, fmt.Errorf("decoding a release record: data after the record")
	}
	return r, r.Validate()
}

// Validate checks a release record's fields.
func (r Release) Validate() error {
	var bad []string
	if r.Version != Version {
		bad = append(bad, fmt.Sprintf("version %d", r.Version))
	}
	if r.Release == "" || strings.ContainsAny(r.Release, " /:@") {
		bad = append(bad, fmt.Sprintf("release %q", r.Release))
	}
	if r.Tag != "v"+r.Release {
		bad = append(bad, fmt.Sprintf("tag %q is not v%s", r.Tag, r.Release))
	}
	if len(r.Commit) != 40 || strings.Trim(r.Commit, "0123456789abcdef") != "" {
		bad = append(bad, fmt.Sprintf("commit %q", r.Commit))
	}
	if r.Profile == "" || strings.ContainsAny(r.Profile, " /:@") {
		bad = append(bad, fmt.Sprintf("profile %q", r.Profile))
	}
	if r.RunID == "" || !isDigest(r.RunRecord) {
		bad = append(bad, "no run or run record digest")
	}
	if r.Created.IsZero() {
		bad = append(bad, "no creation time")
	}
	if len(r.Layers) == 0 {
		bad = append(bad, "no layer")
	}
	seen := map[string]bool{}
	for i, l := range r.Layers {
		switch {
		case l.Layer == "" || seen[l.Layer]:
			bad = append(bad, fmt.Sprintf("layer %q missing or twice", l.Layer))
		case !isDigest(l.Digest):
			bad = append(bad, fmt.Sprintf("layer %s: digest %q", l.Layer, l.Digest))
		case l.Parent != "" && !seen[l.Parent]:
			bad = append(bad, fmt.Sprintf("layer %s: parent %q is not listed before it", l.Layer, l.Parent))
		case i == 0 && l.Parent != "":
			bad = append(bad, "the first layer has a parent")
		}
		seen[l.Layer] = true
	}
	if len(bad) > 0 {
		return fmt.Errorf("release record %s %s: %s", r.Release, r.Profile, strings.Join(bad, "; "))
	}
	return nil
}

// Digests returns every layer's digest by name.
func (r Release) Digests() map[string]string {
	out := map[string]string{}
	for _, l := range r.Layers {
		out[l.Layer] = l.Digest
	}
	return out
}
