package signing

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagemode/imagemode/ci/internal/regtest"
	"github.com/imagemode/imagemode/ci/registry"
)

type env struct {
	host   string
	reg    *registry.Client
	signer *KeySigner
	ver    *KeyVerifier
	other  *KeySigner
	priv   []byte
}

func newEnv(t *testing.T) *env {
	t.Helper()
	host := regtest.Start(t, nil)
	reg := registry.New(registry.WithRetry(registry.Retry{Steps: 1}))
	priv, pub, err := GenerateKeyPair([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewKeySigner(priv, []byte("correct horse"), reg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewKeyVerifier(pub, reg)
	if err != nil {
		t.Fatal(err)
	}
	opriv, _, err := GenerateKeyPair([]byte("other"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewKeySigner(opriv, []byte("other"), reg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{host: host, reg: reg, signer: s, ver: v, other: o, priv: priv}
}

func (e *env) push(t *testing.T, repo string) string {
	t.Helper()
	d, err := regtest.Push(t.Context(), e.host+"/"+repo+":t", 256, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e.host + "/" + repo + "@" + d
}

func TestSignVerify(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	ref := e.push(t, "im/soe")
	if err := e.ver.Verify(ctx, ref); !errors.Is(err, ErrNoSignature) {
		t.Fatalf("unsigned image: %v, want ErrNoSignature", err)
	}
	if err := e.signer.Sign(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if err := e.ver.Verify(ctx, ref); err != nil {
		t.Fatalf("signed image refused: %v", err)
	}
	// Signing again is idempotent: still one signature layer.
	if err := e.signer.Sign(ctx, ref); err != nil {
		t.Fatal(err)
	}
	d, _ := name.NewDigest(ref)
	sigTag := d.Repository.Name() + ":" + strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig"
	r, _ := name.ParseReference(sigTag)
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("legacy signature tag %s: %v", sigTag, err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Errorf("signature image has %d layers (%v), want 1", len(layers), err)
	}
}

func TestVerifyRefusals(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	other := e.push(t, "im/httpd")
	if err := e.other.Sign(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := e.ver.Verify(ctx, other); err == nil {
		t.Error("a signature by another key was accepted")
	}

	// The same digest copied to another repository, with and without its .sig.
	ref := e.push(t, "candidates/soe")
	if err := e.signer.Sign(ctx, ref); err != nil {
		t.Fatal(err)
	}
	_, digest, _ := strings.Cut(ref, "@")
	dst := e.host + "/releases/soe@" + digest
	copyTo(t, ref, e.host+"/releases/soe:v1")
	if err := e.ver.Verify(ctx, dst); err == nil {
		t.Error("a copy without its signature was accepted")
	}
	hex := strings.TrimPrefix(digest, "sha256:")
	copyTo(t, e.host+"/candidates/soe:sha256-"+hex+".sig", e.host+"/releases/soe:sha256-"+hex+".sig")
	err := e.ver.Verify(ctx, dst)
	if err == nil || !strings.Contains(err.Error(), `names repository "`+e.host+`/candidates/soe"`) {
		t.Errorf("a copy with the candidate's .sig: %v, want a repository mismatch", err)
	}
	if err := e.signer.Sign(ctx, e.host+"/candidates/soe:latest"); err == nil || !strings.Contains(err.Error(), "never tags") {
		t.Errorf("signing a tag: %v", err)
	}
}

func TestAttestations(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	ref := e.push(t, "im/homepage")
	if _, err := e.ver.Attestations(ctx, ref, PredicateSmoke); err == nil {
		t.Error("no attestation, but verification passed")
	}
	if err := e.signer.Attest(ctx, ref, PredicateSmoke, []byte(`{"verdict":"fail"}`)); err != nil {
		t.Fatal(err)
	}
	if err := e.signer.Attest(ctx, ref, PredicateSmoke, []byte(`{"verdict":"pass"}`)); err != nil {
		t.Fatal(err)
	}
	sts, err := e.ver.Attestations(ctx, ref, PredicateSmoke)
	if err != nil {
		t.Fatal(err)
	}
	if got := verdicts(t, sts); strings.Join(got, ",") != "fail,pass" && strings.Join(got, ",") != "pass,fail" {
		t.Fatalf("verdicts %v, want both the failed and the passing one", got)
	}
	if _, err := e.ver.Attestations(ctx, ref, "https://example.com/other/v1"); err == nil {
		t.Error("an attestation of another type was accepted")
	}

	byOther := e.push(t, "im/database")
	if err := e.other.Attest(ctx, byOther, PredicateSmoke, []byte(`{"verdict":"pass"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ver.Attestations(ctx, byOther, PredicateSmoke); err == nil {
		t.Error("an attestation signed by another key was accepted")
	}
	if err := e.signer.Attest(ctx, ref, PredicateSmoke, []byte("not json")); err == nil {
		t.Error("a non-JSON predicate was accepted")
	}
}

func TestWrongPasswordDoesNotLeak(t *testing.T) {
	priv, _, err := GenerateKeyPair([]byte("right"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewKeySigner(priv, []byte("wrong-password-xyz"), registry.New())
	if err == nil {
		t.Fatal("wrong password accepted")
	}
	if strings.Contains(err.Error(), "wrong-password-xyz") || strings.Contains(err.Error(), string(priv[40:80])) {
		t.Errorf("error leaks a secret: %v", err)
	}
}

func copyTo(t *testing.T, src, dst string) {
	t.Helper()
	s, err := name.ParseReference(src)
	if err != nil {
		t.Fatal(err)
	}
	d, err := name.ParseReference(dst)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(s, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(d, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
}

func verdicts(t *testing.T, sts []Statement) []string {
	t.Helper()
	var out []string
	for _, st := range sts {
		var p struct{ Verdict string }
		if err := json.Unmarshal(st.Predicate, &p); err != nil {
			t.Fatalf("predicate %s: %v", st.Predicate, err)
		}
		out = append(out, p.Verdict)
	}
	sort.Strings(out)
	return out
}

// An image keeps the newest attestations of each predicate type, and never loses those of another type.
func TestAttestationHistory(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	if _, err := NewKeySigner(e.priv, []byte("correct horse"), e.reg, WithAttestationHistory(0)); err == nil {
		t.Error("a history of 0 was accepted")
	}
	s, err := NewKeySigner(e.priv, []byte("correct horse"), e.reg, WithAttestationHistory(3))
	if err != nil {
		t.Fatal(err)
	}
	ref := e.push(t, "im/homepage")
	const other = "https://example.com/other/v1"
	for i := 1; i <= 5; i++ {
		if err := s.Attest(ctx, ref, PredicateSmoke, []byte(fmt.Sprintf(`{"verdict":"v%d"}`, i))); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if err := s.Attest(ctx, ref, other, []byte(`{"verdict":"other"}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	sts, err := e.ver.Attestations(ctx, ref, PredicateSmoke)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(verdicts(t, sts), ","); got != "v3,v4,v5" {
		t.Errorf("smoke verdicts kept: %s, want the newest three v3,v4,v5", got)
	}
	sts, err = e.ver.Attestations(ctx, ref, other)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(verdicts(t, sts), ","); got != "other" {
		t.Errorf("the other predicate type: %s", got)
	}
	// History 1 replaces, like cosign attest --replace.
	one, err := NewKeySigner(e.priv, []byte("correct horse"), e.reg, WithAttestationHistory(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := one.Attest(ctx, ref, PredicateSmoke, []byte(`{"verdict":"v6"}`)); err != nil {
		t.Fatal(err)
	}
	sts, err = e.ver.Attestations(ctx, ref, PredicateSmoke)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(verdicts(t, sts), ","); got != "v6" {
		t.Errorf("history 1 kept %s, want v6", got)
	}
}
