package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
)

// Fulcio's certificate extensions (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md).
var (
	oidIssuerV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, cn string) ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{"imagemode tests"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf issues a Fulcio-like code-signing certificate for subject (a URI) and issuer, and returns a signer for it.
func (c ca) leaf(t *testing.T, e *env, subject, issuer string) *KeySigner {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(subject)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := asn1.MarshalWithParams(issuer, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(10 * time.Minute),
		URIs:     []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{
			{Id: oidIssuerV1, Value: []byte(issuer)},
			{Id: oidIssuerV2, Value: v2},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(key, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(sv, e.reg, WithCertificate(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), c.pem))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const workflow = "https://github.com/acme/imagemode/.github/workflows/main.yml@refs/heads/main"

func TestIdentityVerification(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	root := newCA(t, "test fulcio")
	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	want := Identity{Issuer: GitHubIssuer, SubjectRegexp: `^https://github\.com/acme/imagemode/\.github/workflows/main\.yml@refs/heads/main$`}
	v, err := NewIdentityVerifier(ctx, want, e.reg, WithRoots(roots, nil), WithoutTransparencyLog())
	if err != nil {
		t.Fatal(err)
	}

	good := e.push(t, "im/soe")
	s := root.leaf(t, e, workflow, GitHubIssuer)
	if err := s.Sign(ctx, good); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(ctx, good); err != nil {
		t.Fatalf("the expected identity was refused: %v", err)
	}
	if err := s.Attest(ctx, good, PredicateSmoke, []byte(`{"verdict":"pass"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Attestations(ctx, good, PredicateSmoke); err != nil {
		t.Errorf("an attestation by the expected identity was refused: %v", err)
	}

	cases := []struct {
		name            string
		signer          *KeySigner
		wantErrContains string
	}{
		{"another issuer", root.leaf(t, e, workflow, "https://accounts.google.com"), "issuer"},
		{"another workflow", root.leaf(t, e, "https://github.com/evil/fork/.github/workflows/main.yml@refs/heads/main", GitHubIssuer), "subject"},
		{"another branch", root.leaf(t, e, strings.Replace(workflow, "refs/heads/main", "refs/heads/feature", 1), GitHubIssuer), "subject"},
		{"another CA", newCA(t, "rogue").leaf(t, e, workflow, GitHubIssuer), "certificate"},
	}
	for _, tc := range cases {
		ref := e.push(t, "im/"+strings.ToLower(strings.ReplaceAll(tc.name, " ", "-")))
		if err := tc.signer.Sign(ctx, ref); err != nil {
			t.Fatal(err)
		}
		err := v.Verify(ctx, ref)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !strings.Contains(strings.ToLower(err.Error()), tc.wantErrContains) {
			t.Errorf("%s: error does not mention %q: %v", tc.name, tc.wantErrContains, err)
		}
	}

	if _, err := NewIdentityVerifier(ctx, Identity{Issuer: GitHubIssuer, SubjectRegexp: "("}, e.reg, WithRoots(roots, nil), WithoutTransparencyLog()); err == nil {
		t.Error("a bad regexp was accepted")
	}
	if _, err := NewIdentityVerifier(ctx, Identity{}, e.reg); err == nil || !strings.Contains(err.Error(), "--certificate-oidc-issuer") {
		t.Errorf("missing identity: %v", err)
	}
}
