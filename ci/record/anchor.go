package record

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// The run anchor of a commit and profile is a small OCI artifact whose content — and so whose digest — follows
// from the commit and the profile alone. Every run of the commit attests its run record on it too, so promotion
// finds the commit's runs by computing the digest, without trusting a tag a registry writer can move (candidate
// and run tags). Its one blob is the empty JSON object.
const (
	AnchorArtifactType = "application/vnd.imagemode.run-anchor.v1"
	EmptyMediaType     = "application/vnd.oci.empty.v1+json"
	ManifestMediaType  = "application/vnd.oci.image.manifest.v1+json"
)

// EmptyBlob is the anchor's config and layer.
var EmptyBlob = []byte("{}")

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int    `json:"size"`
}

type anchorManifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        descriptor        `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Annotations   map[string]string `json:"annotations"`
}

// Anchor returns the run anchor's manifest and its digest.
func Anchor(commit, profile string) ([]byte, string, error) {
	if len(commit) != 40 || profile == "" {
		return nil, "", fmt.Errorf("run anchor: commit %q (a full id) and profile %q are required", commit, profile)
	}
	sum := sha256.Sum256(EmptyBlob)
	empty := descriptor{MediaType: EmptyMediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: len(EmptyBlob)}
	m := anchorManifest{SchemaVersion: 2, MediaType: ManifestMediaType, ArtifactType: AnchorArtifactType, Config: empty,
		Layers: []descriptor{empty}, Annotations: map[string]string{"dev.imagemode.commit": commit, "dev.imagemode.profile": profile}}
	data, err := json.Marshal(m) // struct fields in order, map keys sorted: the same bytes everywhere
	if err != nil {
		return nil, "", fmt.Errorf("encoding the run anchor: %w", err)
	}
	d := sha256.Sum256(data)
	return data, "sha256:" + hex.EncodeToString(d[:]), nil
}
