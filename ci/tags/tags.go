// Package tags names every tag the pipeline writes, in one place, and validates the inputs tags are made of.
//
//	build-<run-id>-<profile>    run-scoped: where each layer is pushed while the run is in progress
//	sha-<commit12>-<profile>    candidate: written only when every layer of the run succeeded
//	inputs-<hash>               the layer's input digest (reuse of unchanged layers)
//	X.Y.Z-<profile>, X.Y-<profile>, <profile>   release tags, written by promotion
package tags

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
)

var (
	runIDRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,39}$`)
	commitRE = regexp.MustCompile(`^[0-9a-f]{7,64}$`)
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// CommitLen is how many hex digits of the commit a candidate tag carries.
const CommitLen = 12

// ValidateRunID checks a run id (it becomes part of tags).
func ValidateRunID(id string) error {
	if !runIDRE.MatchString(id) {
		return fmt.Errorf("--run-id %q: use 1-40 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", id)
	}
	return nil
}

// ValidateCommit checks a commit id (full or abbreviated, lowercase hex).
func ValidateCommit(c string) error {
	if !commitRE.MatchString(c) {
		return fmt.Errorf("--commit %q: want a git commit id (%d to 64 lowercase hex digits)", c, 7)
	}
	if len(c) < CommitLen && len(c) < 40 {
		return fmt.Errorf("--commit %q: give at least %d hex digits (candidate tags carry %d)", c, CommitLen, CommitLen)
	}
	return nil
}

// Run is the run-scoped tag.
func Run(runID, profile string) string { return check("build-" + runID + "-" + profile) }

// Candidate is the candidate tag of a commit and profile.
func Candidate(commit, profile string) string {
	c := commit
	if len(c) > CommitLen {
		c = c[:CommitLen]
	}
	return check("sha-" + c + "-" + profile)
}

// Inputs is the tag recording a layer's input digest ("sha256:<hex>" or "<hex>").
func Inputs(inputDigest string) string {
	_, hex, ok := strings.Cut(inputDigest, ":")
	if !ok {
		hex = inputDigest
	}
	if len(hex) > 64 {
		hex = hex[:64]
	}
	return check("inputs-" + hex)
}

// Valid reports whether t is a valid OCI tag.
func Valid(t string) bool { return tagRE.MatchString(t) }

func check(t string) string {
	if !Valid(t) {
		// Inputs are validated before tags are made; reaching this is a programming error.
		panic(fmt.Sprintf("imagemode: invalid tag %q", t))
	}
	return t
}

// NewRunID returns a run id made of the UTC time and a random suffix, e.g. 20261126t091500-3fa9c1.
func NewRunID(now time.Time) string {
	b := make([]byte, 3)
	// crypto/rand.Read never returns an error on Linux (Go ≥ 1.24 aborts instead).
	if _, err := rand.Read(b); err != nil {
		return now.UTC().Format("20060102t150405")
	}
	return now.UTC().Format("20060102t150405") + "-" + hex.EncodeToString(b)
}
