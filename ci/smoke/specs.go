package smoke

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/signing"
)

// LabelReader reads an image's labels (registry.Client does).
type LabelReader interface {
	Labels(ctx context.Context, ref string) (map[string]string, error)
}

// Specs makes one spec per image from tmpl: the layer is layer when set, else the image's io.imagemode.layer
// label; its probes are what the graph declares for that layer; the profile is the image's label; the commit is
// tmpl.Commit when set (the run's), else the image's revision label. The CLI's smoke verb and the module's
// smoke-test both call it.
func Specs(ctx context.Context, reg LabelReader, refs []string, g *layers.Graph, tmpl Spec, layer string) ([]Spec, error) {
	out := make([]Spec, 0, len(refs))
	for _, ref := range refs {
		labels, err := reg.Labels(ctx, ref)
		if err != nil {
			return nil, err
		}
		name := layer
		if name == "" {
			name = labels[layers.LabelLayer]
		}
		if name == "" {
			return nil, fmt.Errorf("%s has no %s label: name its layer (--layer)", ref, layers.LabelLayer)
		}
		l, ok := g.Layer(name)
		if !ok {
			return nil, fmt.Errorf("%s: its layer %q is not in %s", ref, name, g.File)
		}
		s := tmpl
		s.Image, s.Layer, s.Profile, s.Smoke = ref, name, labels[layers.LabelProfile], l.Smoke
		if s.Commit == "" {
			s.Commit = labels[layers.LabelRevision]
		}
		out = append(out, s)
	}
	return out, nil
}

// Attest signs every verdict as an attestation of its image (predicate type signing.PredicateSmoke) and returns
// the digest of each signed predicate by image (what a run record binds, ci/record).
func Attest(ctx context.Context, s signing.Signer, verdicts []Verdict, log io.Writer) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range verdicts {
		pred, err := json.Marshal(v)
		if err != nil {
			return out, fmt.Errorf("encoding the verdict of %s: %w", v.Image, err)
		}
		if err := s.Attest(ctx, v.Image, signing.PredicateSmoke, pred); err != nil {
			return out, fmt.Errorf("attesting the verdict of %s: %w", v.Image, err)
		}
		out[v.Image] = PredicateDigest(pred)
		fmt.Fprintf(log, "imagemode smoke: attested the %s verdict of %s\n", v.Verdict, v.Image)
	}
	return out, nil
}

// PredicateDigest is "sha256:<hex>" of a predicate as signed (compact JSON: the in-toto statement embeds it so).
func PredicateDigest(pred []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, pred); err == nil {
		pred = b.Bytes()
	}
	sum := sha256.Sum256(pred)
	return "sha256:" + hex.EncodeToString(sum[:])
}
