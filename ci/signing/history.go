package signing

import (
	"fmt"

	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
)

// historyOp is the cosign ReplaceOp of Attest: attestations stay in the order they were attached (oldest first), the
// new one goes last, and of its predicate type only the newest keep survive. Other predicate types are untouched.
type historyOp struct {
	predicateType string
	keep          int
}

var _ mutate.ReplaceOp = historyOp{}

// Replace implements mutate.ReplaceOp.
func (h historyOp) Replace(existing oci.Signatures, added oci.Signature) (oci.Signatures, error) {
	sigs, err := existing.Get()
	if err != nil {
		return nil, fmt.Errorf("reading the existing attestations: %w", err)
	}
	same := 0
	types := make([]string, len(sigs))
	for i, sig := range sigs {
		t, err := predicateTypeOf(sig)
		if err != nil {
			return nil, err
		}
		types[i] = t
		if t == h.predicateType {
			same++
		}
	}
	drop := max(same-(h.keep-1), 0)
	out := make([]oci.Signature, 0, len(sigs)+1)
	for i, sig := range sigs {
		if types[i] == h.predicateType && drop > 0 {
			drop--
			continue
		}
		out = append(out, sig)
	}
	return kept{Signatures: existing, list: append(out, added)}, nil
}

// predicateTypeOf reads an attestation layer's predicate type: the annotation Attest writes, or else the statement.
func predicateTypeOf(sig oci.Signature) (string, error) {
	ann, err := sig.Annotations()
	if err != nil {
		return "", fmt.Errorf("reading an attestation's annotations: %w", err)
	}
	if t := ann["predicateType"]; t != "" {
		return t, nil
	}
	p, err := sig.Payload()
	if err != nil {
		return "", fmt.Errorf("reading an attestation: %w", err)
	}
	st, err := decodeEnvelope(p)
	if err != nil {
		return "", fmt.Errorf("reading an attestation: %w", err)
	}
	return st.PredicateType, nil
}

// kept is the attestation list Replace returns: mutate.ReplaceSignatures reads only Get.
type kept struct {
	oci.Signatures
	list []oci.Signature
}

// Get implements oci.Signatures.
func (k kept) Get() ([]oci.Signature, error) { return k.list, nil }
