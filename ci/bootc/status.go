// Package bootc reads `bootc status --json` (API org.containers.bootc/v1, kind BootcHost): which image is booted,
// staged for the next boot, or kept for rollback, each with its digest.
package bootc

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ImageRef is an image reference as bootc records it.
type ImageRef struct {
	Image     string `json:"image"`
	Transport string `json:"transport"`
}

// ImageStatus is the image of one deployment.
type ImageStatus struct {
	Image       ImageRef `json:"image"`
	Version     string   `json:"version,omitempty"`
	Timestamp   string   `json:"timestamp,omitempty"`
	ImageDigest string   `json:"imageDigest"`
}

// Entry is one deployment (booted, staged or rollback).
type Entry struct {
	Image  *ImageStatus `json:"image"`
	Pinned bool         `json:"pinned,omitempty"`
}

// Digest is the entry's image digest ("" when it has no image).
func (e *Entry) Digest() string {
	if e == nil || e.Image == nil {
		return ""
	}
	return e.Image.ImageDigest
}

// Ref is the reference the entry follows ("" when it has no image).
func (e *Entry) Ref() string {
	if e == nil || e.Image == nil {
		return ""
	}
	return e.Image.Image.Image
}

// Status is bootc's host status.
type Status struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		Image *ImageRef `json:"image"`
	} `json:"spec"`
	Status struct {
		Staged         *Entry `json:"staged"`
		Booted         *Entry `json:"booted"`
		Rollback       *Entry `json:"rollback"`
		RollbackQueued bool   `json:"rollbackQueued"`
	} `json:"status"`
}

// Parse decodes `bootc status --json`.
func Parse(data []byte) (*Status, error) {
	var s Status
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decoding bootc status: %w", err)
	}
	if s.Kind != "BootcHost" {
		return nil, fmt.Errorf("bootc status: kind %q, want BootcHost", s.Kind)
	}
	return &s, nil
}

// Booted returns the booted deployment's digest and reference.
func (s *Status) Booted() (digest, ref string, err error) {
	b := s.Status.Booted
	if b.Digest() == "" {
		return "", "", errors.New("bootc status shows no booted image")
	}
	return b.Digest(), b.Ref(), nil
}
