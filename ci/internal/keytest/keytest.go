// Package keytest gives tests a fresh cosign key pair wired to a registry client: the signer and the verifier.
package keytest

import (
	"testing"

	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/signing"
)

// Pair makes a key pair encrypted with password and returns its signer, its verifier and the public key (PEM).
func Pair(t testing.TB, reg *registry.Client, password string) (*signing.KeySigner, *signing.KeyVerifier, []byte) {
	t.Helper()
	priv, pub, err := signing.GenerateKeyPair([]byte(password))
	if err != nil {
		t.Fatal(err)
	}
	s, err := signing.NewKeySigner(priv, []byte(password), reg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signing.NewKeyVerifier(pub, reg)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, pub
}
