package flow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imagemode/imagemode/ci/provenance"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/sbom"
	"github.com/imagemode/imagemode/ci/signing"
)

// ImageReader opens an image by reference (registry.Client).
type ImageReader interface {
	Image(ctx context.Context, ref string) (v1.Image, error)
}

// Evidence is what was attested about one built layer: its SBOM and its provenance.
type Evidence struct {
	Layer    string `json:"layer"`
	Image    string `json:"image"`
	Packages int    `json:"packages"`
	// SBOMMS and ProvenanceMS are the time spent making and attesting each.
	SBOMMS       int64 `json:"sbomMs"`
	ProvenanceMS int64 `json:"provenanceMs"`
}

// Evidencer attests the SBOM and SLSA provenance of every layer a run built. Reused layers keep those of the run
// that built them.
type Evidencer struct {
	Images ImageReader
	Signer signing.Signer
	// BuilderID names the build platform in the provenance (default: provenance.BuilderID()).
	BuilderID string
	// ToolVersion is imagemode's version, named in the SBOM's creation info.
	ToolVersion string
	Log         io.Writer
}

// Attest attests the SBOM (sbom.PredicateType) and the provenance (provenance.PredicateType) of every built layer
// of rep. It stops at the first failure, naming the layer; what it attested so far is returned.
func (e *Evidencer) Attest(ctx context.Context, rep *report.Report) ([]Evidence, error) {
	if e.Images == nil || e.Signer == nil {
		return nil, errors.New("SBOM and provenance need the registry and the signing key")
	}
	log := e.Log
	if log == nil {
		log = io.Discard
	}
	var out []Evidence
	for _, l := range rep.Layers {
		if l.Status != report.StatusBuilt {
			fmt.Fprintf(log, "%s: reused, keeps the SBOM and provenance of the run that built it (%s)\n", l.Name, l.Ref)
			continue
		}
		ev := Evidence{Layer: l.Name, Image: l.Ref}
		start := time.Now()
		prov, err := provenance.New(rep, l, e.BuilderID)
		if err != nil {
			return out, err
		}
		data, err := prov.JSON()
		if err != nil {
			return out, fmt.Errorf("layer %q: encoding the provenance: %w", l.Name, err)
		}
		if err := e.Signer.Attest(ctx, l.Ref, provenance.PredicateType, data); err != nil {
			return out, fmt.Errorf("layer %q: attesting the provenance of %s: %w", l.Name, l.Ref, err)
		}
		ev.ProvenanceMS = time.Since(start).Milliseconds()
		start = time.Now()
		img, err := e.Images.Image(ctx, l.Ref)
		if err != nil {
			return out, fmt.Errorf("layer %q: %w", l.Name, err)
		}
		doc, err := sbom.Generate(ctx, img, l.Ref, e.ToolVersion)
		if err != nil {
			return out, fmt.Errorf("layer %q: %w", l.Name, err)
		}
		pkgs, err := sbom.Packages(doc)
		if err != nil {
			return out, fmt.Errorf("layer %q: reading back its SBOM: %w", l.Name, err)
		}
		if err := e.Signer.Attest(ctx, l.Ref, sbom.PredicateType, doc); err != nil {
			return out, fmt.Errorf("layer %q: attesting the SBOM of %s: %w", l.Name, l.Ref, err)
		}
		ev.SBOMMS, ev.Packages = time.Since(start).Milliseconds(), len(pkgs)
		fmt.Fprintf(log, "%s: attested its SBOM (%d packages, %s) and provenance (%s) on %s\n", l.Name, len(pkgs),
			time.Duration(ev.SBOMMS)*time.Millisecond, time.Duration(ev.ProvenanceMS)*time.Millisecond, l.Ref)
		out = append(out, ev)
	}
	return out, nil
}
