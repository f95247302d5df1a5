package signing

import (
	"context"
	"crypto/x509"
	"fmt"
	"regexp"

	"github.com/sigstore/cosign/v2/cmd/cosign/cli/options"
	"github.com/sigstore/cosign/v2/cmd/cosign/cli/sign"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/fulcioroots"

	"github.com/imagemode/imagemode/ci/registry"
)

// Public-good Sigstore endpoints (the defaults of keyless signing).
const (
	DefaultFulcioURL = "https://fulcio.sigstore.dev"
	DefaultRekorURL  = "https://rekor.sigstore.dev"
	// GitHubIssuer is the OIDC issuer of GitHub Actions identity tokens.
	GitHubIssuer = "https://token.actions.githubusercontent.com"
)

// NewKeyless returns a signer with an ephemeral key certified by Fulcio for the OIDC identity token (on GitHub
// Actions: minted with id-token: write right before signing — it expires after minutes), uploading every signature
// to Rekor. This is the optional second, provenance signature; hosts enforce the key-mode one. It needs the
// public-good Sigstore services, so it runs on GitHub Actions, not on machines without internet.
func NewKeyless(ctx context.Context, idToken, fulcioURL, rekorURL string, reg *registry.Client) (*KeySigner, error) {
	if idToken == "" {
		return nil, fmt.Errorf("keyless signing needs an OIDC identity token")
	}
	if fulcioURL == "" {
		fulcioURL = DefaultFulcioURL
	}
	if rekorURL == "" {
		rekorURL = DefaultRekorURL
	}
	ko := options.KeyOpts{IDToken: idToken, FulcioURL: fulcioURL, RekorURL: rekorURL, SkipConfirmation: true}
	ephemeral, _, err := sign.SignerFromKeyOpts(ctx, "", "", ko)
	if err != nil {
		return nil, fmt.Errorf("making an ephemeral key: %w", err)
	}
	certified, err := sign.KeylessSigner(ctx, ko, ephemeral)
	if err != nil {
		return nil, fmt.Errorf("getting a certificate from %s: %w", fulcioURL, redact(err, []byte(idToken)))
	}
	return NewSigner(certified, reg, WithCertificate(certified.Cert, certified.Chain), WithTlogUpload(rekorURL))
}

// Identity is who a keyless signature must come from: the certificate's OIDC issuer and a regular expression its
// subject (e.g. a GitHub workflow URI) must match.
type Identity struct {
	Issuer        string
	SubjectRegexp string
}

// IdentityVerifier verifies keyless signatures by certificate identity.
type IdentityVerifier struct {
	id            Identity
	roots         *x509.CertPool
	intermediates *x509.CertPool
	reg           *registry.Client
	offline       bool
	rekorKeys     *cosign.TrustedTransparencyLogPubKeys
	ctKeys        *cosign.TrustedTransparencyLogPubKeys
}

// IdentityOption configures an IdentityVerifier.
type IdentityOption func(*IdentityVerifier)

// WithRoots replaces the Fulcio roots (tests use their own CA).
func WithRoots(roots, intermediates *x509.CertPool) IdentityOption {
	return func(v *IdentityVerifier) { v.roots, v.intermediates = roots, intermediates }
}

// WithoutTransparencyLog skips the Rekor inclusion and SCT checks: only for certificates from a private CA in
// tests, where no log exists.
func WithoutTransparencyLog() IdentityOption { return func(v *IdentityVerifier) { v.offline = true } }

// NewIdentityVerifier returns a verifier for keyless signatures of id. Without options it trusts the public-good
// Fulcio roots and requires Rekor inclusion and an SCT, fetching the trust material through Sigstore's TUF root.
func NewIdentityVerifier(ctx context.Context, id Identity, reg *registry.Client, opts ...IdentityOption) (*IdentityVerifier, error) {
	if id.Issuer == "" || id.SubjectRegexp == "" {
		return nil, fmt.Errorf("keyless verification needs --certificate-oidc-issuer and --certificate-identity-regexp")
	}
	if _, err := regexp.Compile(id.SubjectRegexp); err != nil {
		return nil, fmt.Errorf("--certificate-identity-regexp %q: %w", id.SubjectRegexp, err)
	}
	v := &IdentityVerifier{id: id, reg: reg}
	for _, o := range opts {
		o(v)
	}
	if v.roots == nil {
		roots, err := fulcioroots.Get()
		if err != nil {
			return nil, fmt.Errorf("loading the Fulcio roots: %w", err)
		}
		inter, err := fulcioroots.GetIntermediates()
		if err != nil {
			return nil, fmt.Errorf("loading the Fulcio intermediates: %w", err)
		}
		v.roots, v.intermediates = roots, inter
	}
	if !v.offline {
		var err error
		if v.rekorKeys, err = cosign.GetRekorPubs(ctx); err != nil {
			return nil, fmt.Errorf("loading the Rekor keys: %w", err)
		}
		if v.ctKeys, err = cosign.GetCTLogPubs(ctx); err != nil {
			return nil, fmt.Errorf("loading the CT log keys: %w", err)
		}
	}
	return v, nil
}

func (v *IdentityVerifier) checkOpts(ctx context.Context) *cosign.CheckOpts {
	return &cosign.CheckOpts{
		RegistryClientOpts: []ociremote.Option{ociremote.WithRemoteOptions(v.reg.RemoteOptions(ctx)...)},
		RootCerts:          v.roots,
		IntermediateCerts:  v.intermediates,
		Identities:         []cosign.Identity{{Issuer: v.id.Issuer, SubjectRegExp: v.id.SubjectRegexp}},
		IgnoreTlog:         v.offline,
		IgnoreSCT:          v.offline,
		RekorPubKeys:       v.rekorKeys,
		CTLogPubKeys:       v.ctKeys,
	}
}

// Verify implements Verifier.
func (v *IdentityVerifier) Verify(ctx context.Context, digestRef string) error {
	return verifySignatures(ctx, digestRef, v.checkOpts(ctx))
}

// Attestations implements Verifier.
func (v *IdentityVerifier) Attestations(ctx context.Context, digestRef, predicateType string) ([]Statement, error) {
	return verifyAttestations(ctx, digestRef, predicateType, v.checkOpts(ctx))
}
