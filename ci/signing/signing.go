// Package signing signs, attests and verifies images by digest with cosign v2, in the legacy sha256-<hex>.sig
// format that podman, skopeo and bootc verify through /etc/containers/policy.json (cosign v3's bundle format is
// invisible to them).
//
// Key mode is the one hosts enforce: a private key and its password, no transparency-log upload unless asked.
// Keyless signatures (Fulcio certificates) are an optional second signature for provenance; bootc's policy engine
// can match keyless signers only by e-mail, and GitHub Actions certificates carry a workflow URI, so hosts cannot
// enforce them today.
package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/cmd/cosign/cli/rekor"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	cremote "github.com/sigstore/cosign/v2/pkg/cosign/remote"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/cosign/v2/pkg/types"
	rekorclient "github.com/sigstore/rekor/pkg/generated/client"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/imagemode/imagemode/ci/registry"
)

// PredicateSmoke is the in-toto predicate type of imagemode's VM smoke-test verdicts.
const PredicateSmoke = "https://imagemode.dev/attestations/smoke-test/v1"

// Signer signs digests and attaches attestations to them.
type Signer interface {
	Sign(ctx context.Context, digestRef string) error
	Attest(ctx context.Context, digestRef, predicateType string, predicate []byte) error
}

// Verifier checks signatures and attestations of digests.
type Verifier interface {
	// Verify fails unless digestRef carries a valid signature made for that digest in that repository.
	Verify(ctx context.Context, digestRef string) error
	// Attestations returns the verified in-toto statements of the predicate type attached to digestRef.
	Attestations(ctx context.Context, digestRef, predicateType string) ([]Statement, error)
}

// Statement is an in-toto statement (v0.1, as cosign v2 writes it).
type Statement struct {
	Type          string          `json:"_type"`
	PredicateType string          `json:"predicateType"`
	Subject       []Subject       `json:"subject"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Subject names what a statement is about.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

func parseDigestRef(ref string) (name.Digest, error) {
	d, err := name.NewDigest(ref)
	if err != nil {
		return name.Digest{}, fmt.Errorf("%q is not a digest reference (repository@sha256:...): signatures are made for digests, never tags: %w", ref, err)
	}
	return d, nil
}

// KeySigner signs with a private key — a cosign key file, or an ephemeral key certified by Fulcio (keyless).
type KeySigner struct {
	sv      signature.SignerVerifier
	reg     *registry.Client
	cert    []byte
	chain   []byte
	rekor   *rekorclient.Rekor
	history int
}

// DefaultAttestationHistory is how many attestations of one predicate type an image keeps by default.
const DefaultAttestationHistory = 10

// WithAttestationHistory keeps the newest n attestations of each predicate type on an image (default
// DefaultAttestationHistory; 1 replaces the previous one, like cosign attest --replace). Keeping several matters to
// promotion: an image reused unchanged by later commits carries one smoke verdict per commit that tested it.
func WithAttestationHistory(n int) SignerOption {
	return func(s *KeySigner) error {
		if n < 1 {
			return fmt.Errorf("attestation history %d: keep at least 1", n)
		}
		s.history = n
		return nil
	}
}

// SignerOption configures a KeySigner.
type SignerOption func(*KeySigner) error

// WithCertificate attaches a certificate (and its chain, PEM) for the signing key to every signature.
func WithCertificate(cert, chain []byte) SignerOption {
	return func(s *KeySigner) error { s.cert, s.chain = cert, chain; return nil }
}

// WithTlogUpload uploads every signature to the Rekor transparency log at url (off by default in key mode).
func WithTlogUpload(url string) SignerOption {
	return func(s *KeySigner) error {
		c, err := rekor.NewClient(url)
		if err != nil {
			return fmt.Errorf("rekor client for %q: %w", url, err)
		}
		s.rekor = c
		return nil
	}
}

// NewKeySigner loads a cosign private key (PEM, "ENCRYPTED SIGSTORE PRIVATE KEY" or a plain PKCS#8/EC key) with its
// password.
func NewKeySigner(keyPEM, password []byte, reg *registry.Client, opts ...SignerOption) (*KeySigner, error) {
	sv, err := cosign.LoadPrivateKey(keyPEM, password, nil)
	if err != nil {
		return nil, fmt.Errorf("loading the signing key (wrong password or not a cosign key): %w", redact(err, password))
	}
	return NewSigner(sv, reg, opts...)
}

// NewSigner wraps a loaded signer.
func NewSigner(sv signature.SignerVerifier, reg *registry.Client, opts ...SignerOption) (*KeySigner, error) {
	s := &KeySigner{sv: sv, reg: reg, history: DefaultAttestationHistory}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// staticOpts are the certificate and transparency-log parts of a signature or attestation layer.
func (s *KeySigner) staticOpts(ctx context.Context, sig, signed []byte) ([]static.Option, error) {
	var opts []static.Option
	if s.cert != nil {
		opts = append(opts, static.WithCertChain(s.cert, s.chain))
	}
	if s.rekor != nil {
		pem := s.cert
		if pem == nil {
			var err error
			if pem, err = s.PublicKeyPEM(); err != nil {
				return nil, err
			}
		}
		h := sha256.New()
		h.Write(signed)
		entry, err := cosign.TLogUpload(ctx, s.rekor, sig, h, pem)
		if err != nil {
			return nil, fmt.Errorf("uploading to the transparency log: %w", err)
		}
		opts = append(opts, static.WithBundle(cbundle.EntryToBundle(entry)))
	}
	return opts, nil
}

// PublicKeyPEM returns the signer's public key.
func (s *KeySigner) PublicKeyPEM() ([]byte, error) {
	pub, err := s.sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("reading the public key: %w", err)
	}
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding the public key: %w", err)
	}
	return b, nil
}

func (s *KeySigner) ociOpts(ctx context.Context) []ociremote.Option {
	return []ociremote.Option{ociremote.WithRemoteOptions(s.reg.RemoteOptions(ctx)...)}
}

// mustExist refuses to sign for a digest its repository does not hold: such a signature would vouch for nothing
// the registry serves (and for whatever is pushed under that digest later).
func (s *KeySigner) mustExist(ctx context.Context, verb, digestRef string) error {
	ok, err := s.reg.Exists(ctx, digestRef)
	if err != nil {
		return fmt.Errorf("%s %q: %w", verb, digestRef, err)
	}
	if !ok {
		return fmt.Errorf("%s %q: the repository holds no manifest with that digest; nothing was signed", verb, digestRef)
	}
	return nil
}

// Sign attaches a signature for digestRef to its repository (tag sha256-<hex>.sig). Signing the same digest again
// with the same key is a no-op.
func (s *KeySigner) Sign(ctx context.Context, digestRef string) error {
	d, err := parseDigestRef(digestRef)
	if err != nil {
		return err
	}
	if err := s.mustExist(ctx, "signing", digestRef); err != nil {
		return err
	}
	pl, err := (&payload.Cosign{Image: d}).MarshalJSON()
	if err != nil {
		return fmt.Errorf("signing %q: making the payload: %w", digestRef, err)
	}
	raw, err := s.sv.SignMessage(bytes.NewReader(pl), sigopts.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("signing %q: %w", digestRef, err)
	}
	sopts, err := s.staticOpts(ctx, raw, pl)
	if err != nil {
		return fmt.Errorf("signing %q: %w", digestRef, err)
	}
	sig, err := static.NewSignature(pl, base64.StdEncoding.EncodeToString(raw), sopts...)
	if err != nil {
		return fmt.Errorf("signing %q: %w", digestRef, err)
	}
	opts := s.ociOpts(ctx)
	se := ociremote.SignedUnknown(d, opts...)
	newSE, err := mutate.AttachSignatureToEntity(se, sig, mutate.WithDupeDetector(cremote.NewDupeDetector(s.sv)))
	if err != nil {
		return fmt.Errorf("signing %q: attaching the signature: %w", digestRef, err)
	}
	if err := ociremote.WriteSignatures(d.Repository, newSE, opts...); err != nil {
		return fmt.Errorf("signing %q: writing the signature: %w", digestRef, err)
	}
	return nil
}

// Attest attaches a signed in-toto statement with predicate (JSON) about digestRef (tag sha256-<hex>.att). The newest
// attestations of each predicate type are kept (WithAttestationHistory); older ones of the same type are dropped.
func (s *KeySigner) Attest(ctx context.Context, digestRef, predicateType string, predicate []byte) error {
	d, err := parseDigestRef(digestRef)
	if err != nil {
		return err
	}
	if !json.Valid(predicate) {
		return fmt.Errorf("attesting %q: the predicate is not JSON", digestRef)
	}
	if err := s.mustExist(ctx, "attesting", digestRef); err != nil {
		return err
	}
	_, hex, _ := strings.Cut(d.DigestStr(), ":")
	st, err := json.Marshal(Statement{
		Type:          "https://in-toto.io/Statement/v0.1",
		PredicateType: predicateType,
		Subject:       []Subject{{Name: d.Repository.Name(), Digest: map[string]string{"sha256": hex}}},
		Predicate:     predicate,
	})
	if err != nil {
		return fmt.Errorf("attesting %q: %w", digestRef, err)
	}
	wrapped := dsse.WrapSigner(s.sv, types.IntotoPayloadType)
	env, err := wrapped.SignMessage(bytes.NewReader(st), sigopts.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("attesting %q: %w", digestRef, err)
	}
	aopts := []static.Option{static.WithLayerMediaType(types.DssePayloadType),
		static.WithAnnotations(map[string]string{"predicateType": predicateType})}
	if s.cert != nil {
		aopts = append(aopts, static.WithCertChain(s.cert, s.chain))
	}
	att, err := static.NewAttestation(env, aopts...)
	if err != nil {
		return fmt.Errorf("attesting %q: %w", digestRef, err)
	}
	opts := s.ociOpts(ctx)
	se := ociremote.SignedUnknown(d, opts...)
	newSE, err := mutate.AttachAttestationToEntity(se, att,
		mutate.WithDupeDetector(cremote.NewDupeDetector(s.sv)), mutate.WithReplaceOp(historyOp{predicateType: predicateType, keep: s.history}))
	if err != nil {
		return fmt.Errorf("attesting %q: %w", digestRef, err)
	}
	if err := ociremote.WriteAttestations(d.Repository, newSE, opts...); err != nil {
		return fmt.Errorf("attesting %q: writing the attestation: %w", digestRef, err)
	}
	return nil
}

// KeyVerifier verifies with a cosign public key.
type KeyVerifier struct {
	v   signature.Verifier
	reg *registry.Client
}

// NewKeyVerifier loads a PEM public key.
func NewKeyVerifier(pubPEM []byte, reg *registry.Client) (*KeyVerifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the public key: %w", err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("loading the public key: %w", err)
	}
	return &KeyVerifier{v: v, reg: reg}, nil
}

func (k *KeyVerifier) checkOpts(ctx context.Context) *cosign.CheckOpts {
	return &cosign.CheckOpts{
		RegistryClientOpts: []ociremote.Option{ociremote.WithRemoteOptions(k.reg.RemoteOptions(ctx)...)},
		SigVerifier:        k.v,
		IgnoreTlog:         true,
	}
}

// Verify implements Verifier: a signature by the key, for this digest, naming this repository (what bootc's
// matchRepository policy requires too).
func (k *KeyVerifier) Verify(ctx context.Context, digestRef string) error {
	return verifySignatures(ctx, digestRef, k.checkOpts(ctx))
}

// Attestations implements Verifier.
func (k *KeyVerifier) Attestations(ctx context.Context, digestRef, predicateType string) ([]Statement, error) {
	return verifyAttestations(ctx, digestRef, predicateType, k.checkOpts(ctx))
}

// ErrNoSignature says an image has no valid signature at all.
var ErrNoSignature = errors.New("no valid signature")

func verifySignatures(ctx context.Context, digestRef string, co *cosign.CheckOpts) error {
	d, err := parseDigestRef(digestRef)
	if err != nil {
		return err
	}
	repo := d.Repository.Name()
	co.ClaimVerifier = func(sig oci.Signature, imageDigest v1.Hash, annotations map[string]interface{}) error {
		if err := cosign.SimpleClaimVerifier(sig, imageDigest, annotations); err != nil {
			return err
		}
		p, err := sig.Payload()
		if err != nil {
			return err
		}
		var ss payload.SimpleContainerImage
		if err := json.Unmarshal(p, &ss); err != nil {
			return err
		}
		if got := ss.Critical.Identity.DockerReference; got != repo {
			return fmt.Errorf("the signature names repository %q, not %q (signatures do not travel with copies)", got, repo)
		}
		return nil
	}
	if _, _, err := cosign.VerifyImageSignatures(ctx, d, co); err != nil {
		if registry.IsUnreachable(err) {
			return fmt.Errorf("verifying the signature of %q: the registry is unreachable (nothing was verified): %w", digestRef, err)
		}
		return fmt.Errorf("verifying the signature of %q: %w: %w", digestRef, ErrNoSignature, err)
	}
	return nil
}

func verifyAttestations(ctx context.Context, digestRef, predicateType string, co *cosign.CheckOpts) ([]Statement, error) {
	d, err := parseDigestRef(digestRef)
	if err != nil {
		return nil, err
	}
	co.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
	sigs, _, err := cosign.VerifyImageAttestations(ctx, d, co)
	if err != nil {
		return nil, fmt.Errorf("verifying the attestations of %q: %w", digestRef, err)
	}
	var out []Statement
	for _, s := range sigs {
		p, err := s.Payload()
		if err != nil {
			return nil, fmt.Errorf("reading an attestation of %q: %w", digestRef, err)
		}
		st, err := decodeEnvelope(p)
		if err != nil {
			return nil, fmt.Errorf("reading an attestation of %q: %w", digestRef, err)
		}
		if st.PredicateType == predicateType {
			out = append(out, st)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q has no verified attestation of type %s", digestRef, predicateType)
	}
	return out, nil
}

func decodeEnvelope(p []byte) (Statement, error) {
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
	}
	if err := json.Unmarshal(p, &env); err != nil {
		return Statement{}, fmt.Errorf("decoding the DSSE envelope: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return Statement{}, fmt.Errorf("decoding the DSSE payload: %w", err)
	}
	var st Statement
	if err := json.Unmarshal(raw, &st); err != nil {
		return Statement{}, fmt.Errorf("decoding the in-toto statement: %w", err)
	}
	return st, nil
}

// GenerateKeyPair makes a cosign key pair encrypted with password (PEM private key, PEM public key).
func GenerateKeyPair(password []byte) (priv, pub []byte, err error) {
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return password, nil })
	if err != nil {
		return nil, nil, fmt.Errorf("generating a key pair: %w", err)
	}
	return kb.PrivateBytes, kb.PublicBytes, nil
}

// redact removes a secret from an error's text (some libraries echo their input).
func redact(err error, secret []byte) error {
	if len(secret) == 0 || !strings.Contains(err.Error(), string(secret)) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), string(secret), "[redacted]"))
}
