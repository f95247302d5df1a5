// Package record is the signed account of one run: for one commit and profile, the run's id and, per layer, the
// image digest it tested, the verdict and the digest of the signed verdict. The ci flow attests it on the run's root
// image; promotion requires it (ci/release).
//
// Threat model. An attacker who can write to the registry but does not hold the signing key can delete, re-point
// or replay any manifest, attestations included; they cannot make a signature. Promotion must not then promote past
// a newer failed verdict:
//
//   - deleting a failed verdict (re-pointing an image's .att to an older manifest) leaves the run record, which
//     says fail: blocked;
//   - deleting the record too: a record that names the run promotion expects (--expect-run, the newest CI run of
//     the commit as GitHub reports it) is missing: blocked; without --expect-run the newest record present is used,
//     and any signed verdict of the commit newer than it (a later run whose record is gone) blocks;
//   - replaying an older record of the same commit: refused for the same two reasons; a record of another commit or
//     profile never counts;
//   - a verdict the record names but the image no longer carries: blocked (the record binds the verdicts' digests);
//   - a malformed record or verdict signed by the key: promotion stops on it;
//   - re-pointing candidate tags at an older build of the same commit (no attestation touched): every run's record
//     is attested on the commit's run anchor too (Anchor: a digest computed from the commit and profile, no tag
//     trusted); the newest there names the digests to promote, and candidate tags pointing elsewhere are refused;
//   - a reused digest a later commit's run failed: that run's record sits on the same root image (a reused layer's
//     ancestors are reused too) and refuses the digest, whichever commit is promoted, even with the failed verdict
//     itself deleted;
//   - exact release tags written by hand (even onto a signed family): the floating tags follow only releases a
//     signed release record (Release) describes, with every exact tag at the record's digests; a release with a
//     record that no longer verifies stops the promotion; the floating tags never move to a lower version.
//
// What remains: the writer can delete attestations (re-point a .att tag to an older manifest). Without
// --expect-run, rolling back every attestation manifest of a commit's images and its anchor to the state of an
// older run (deleting all newer records and verdicts) makes that older, consistent state all promotion can see;
// deleting a later commit's record and verdict hides its failure of a reused digest; deleting a release record
// makes that release's tags ignored (the floating tags then refuse to move back: the next promotion stops). Only a
// record of which run is the newest kept outside the registry closes the first (GitHub's run list: release.yml
// passes --expect-run; keyless signing's transparency log would be another).
package record

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/imagemode/imagemode/ci/smoke"
)

// PredicateType is the in-toto predicate type of run records.
const PredicateType = "https://imagemode.dev/attestations/run-record/v1"

// Version of the record format.
const Version = 1

// Entry is one layer's result in a run.
type Entry struct {
	Layer   string `json:"layer"`
	Digest  string `json:"digest"`
	Verdict string `json:"verdict"`
	// Predicate is the digest of the signed verdict (smoke.PredicateDigest).
	Predicate string `json:"predicate"`
}

// Record is one run's account.
type Record struct {
	Version int       `json:"version"`
	Commit  string    `json:"commit"`
	Profile string    `json:"profile"`
	RunID   string    `json:"runId"`
	Created time.Time `json:"created"`
	Layers  []Entry   `json:"layers"`
}

// New makes the record of a run from its attested verdicts (predicates: image → predicate digest).
func New(commit, profile, runID string, verdicts []smoke.Verdict, predicates map[string]string, now time.Time) (Record, error) {
	r := Record{Version: Version, Commit: commit, Profile: profile, RunID: runID, Created: now.UTC()}
	for _, v := range verdicts {
		p, ok := predicates[v.Image]
		if !ok {
			return Record{}, fmt.Errorf("run record: the verdict of %s was not attested", v.Image)
		}
		r.Layers = append(r.Layers, Entry{Layer: v.Layer, Digest: v.Digest, Verdict: v.Verdict, Predicate: p})
	}
	return r, r.validate()
}

// Parse decodes a record strictly: anything missing or unknown is an error.
func Parse(data []byte) (Record, error) {
	var r Record
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("decoding a run record: %w", err)
	}
	return r, r.validate()
}

func (r Record) validate() error {
	var bad []string
	if r.Version != Version {
		bad = append(bad, fmt.Sprintf("version %d", r.Version))
	}
	if r.Commit == "" {
		bad = append(bad, "no commit")
	}
	if r.Profile == "" {
		bad = append(bad, "no profile")
	}
	if r.RunID == "" {
		bad = append(bad, "no run id")
	}
	if r.Created.IsZero() {
		bad = append(bad, "no creation time")
	}
	if len(r.Layers) == 0 {
		bad = append(bad, "no layer")
	}
	seen := map[string]bool{}
	for _, e := range r.Layers {
		switch {
		case e.Layer == "" || seen[e.Layer]:
			bad = append(bad, fmt.Sprintf("layer %q missing or twice", e.Layer))
		case !isDigest(e.Digest) || !isDigest(e.Predicate):
			bad = append(bad, fmt.Sprintf("layer %s: a digest is malformed", e.Layer))
		case e.Verdict != smoke.Pass && e.Verdict != smoke.Fail:
			bad = append(bad, fmt.Sprintf("layer %s: verdict %q", e.Layer, e.Verdict))
		}
		seen[e.Layer] = true
	}
	if len(bad) > 0 {
		return fmt.Errorf("run record %s: %s", r.RunID, strings.Join(bad, "; "))
	}
	return nil
}

// Entry returns the layer's entry.
func (r Record) Entry(layer string) (Entry, bool) {
	for _, e := range r.Layers {
		if e.Layer == layer {
			return e, true
		}
	}
	return Entry{}, false
}

func isDigest(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for _, c := range h {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}
