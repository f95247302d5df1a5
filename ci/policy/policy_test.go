package policy

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/imagemode/imagemode/ci/internal/golden"
)

// testKey is a fixed public key (testdata/key.pub) so that golden files are stable.
var testKey = func() string {
	b, err := os.ReadFile("testdata/key.pub")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func cfg() Config {
	return Config{PublicKey: []byte(testKey), Namespaces: []string{"ghcr.io/acme/imagemode", "registry.example.com/releases/imagemode", "ghcr.io/acme/imagemode/"},
		Mode: ModeNamespaces}
}

func TestMergeKeepsRHELEntries(t *testing.T) {
	base, err := os.ReadFile("testdata/rhel-base-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	out, err := Merge(base, cfg())
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "rhel-merged-policy.json.golden", out)

	var doc struct {
		Default    []map[string]any                       `json:"default"`
		Transports map[string]map[string][]map[string]any `json:"transports"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	docker := doc.Transports["docker"]
	if docker["registry.redhat.io"][0]["type"] != "signedBy" || docker["registry.access.redhat.com"][0]["type"] != "signedBy" {
		t.Errorf("Red Hat's GPG entries were dropped: %v", docker)
	}
	for _, ns := range []string{"ghcr.io/acme/imagemode", "registry.example.com/releases/imagemode"} {
		r := docker[ns]
		if len(r) != 1 || r[0]["type"] != "sigstoreSigned" || r[0]["keyPath"] != KeyPath {
			t.Errorf("%s requirement = %v", ns, r)
		}
		if id, _ := r[0]["signedIdentity"].(map[string]any); id["type"] != "matchRepository" {
			t.Errorf("%s identity = %v", ns, r[0]["signedIdentity"])
		}
	}
	if doc.Default[0]["type"] != "insecureAcceptAnything" || doc.Transports["docker-daemon"] == nil {
		t.Errorf("default or docker-daemon changed: %s", out)
	}
	again, err := Merge(base, cfg())
	if err != nil || string(again) != string(out) {
		t.Errorf("Merge is not deterministic")
	}
}

func TestMergeWithoutBasePolicy(t *testing.T) {
	out, err := Merge(nil, Config{PublicKey: []byte(testKey), Namespaces: []string{"127.0.0.1:5000/it"}, Mode: ModeNamespaces})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "empty-base-policy.json.golden", out)
}

func TestRegistriesDAndFiles(t *testing.T) {
	golden.Check(t, "registries.d.yaml.golden", RegistriesD(cfg()))
	c := cfg()
	files, err := Files(nil, &c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"imagemode-trust/etc/containers/policy.json", "imagemode-trust/etc/containers/registries.d/imagemode.yaml",
		"imagemode-trust/etc/pki/containers/imagemode.pub", "imagemode-trust/usr/share/imagemode/trust.txt"} {
		if _, ok := files[p]; !ok {
			t.Errorf("missing %s", p)
		}
	}
	if !strings.Contains(string(files["imagemode-trust/usr/share/imagemode/trust.txt"]), Fingerprint([]byte(testKey))) {
		t.Errorf("trust note lacks the key fingerprint")
	}
	none, err := Files(nil, nil)
	if err != nil || len(none) != 1 || !strings.Contains(string(none["imagemode-trust/usr/share/imagemode/trust.txt"]), "no signature policy") {
		t.Errorf("Files without a key = %v, %v", none, err)
	}
}

func TestValidation(t *testing.T) {
	_, pub, err := generated()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		c    Config
		want string
	}{
		{Config{PublicKey: pub}, "give at least one repository prefix"},
		{Config{PublicKey: pub, Namespaces: []string{"imagemode"}}, `--trusted-namespace "imagemode"`},
		{Config{PublicKey: pub, Namespaces: []string{"ghcr.io/acme/im:latest"}}, `--trusted-namespace "ghcr.io/acme/im:latest"`},
		{Config{PublicKey: pub, Namespaces: []string{"*.example.com/x"}}, "no tag, digest or wildcard"},
		{Config{PublicKey: []byte("nope"), Namespaces: []string{"ghcr.io/acme"}}, "not a PEM public key"},
	}
	for _, tc := range cases {
		if err := tc.c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%v) = %v, want %q", tc.c.Namespaces, err, tc.want)
		}
	}
	for _, bad := range []string{"{", `{"transports":{}}`, `{"default":[],"transports":[]}`} {
		if _, err := Merge([]byte(bad), Config{PublicKey: pub, Namespaces: []string{"ghcr.io/acme"}}); err == nil {
			t.Errorf("Merge accepted base %q", bad)
		}
	}
}

func generated() ([]byte, []byte, error) {
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("x"), nil })
	if err != nil {
		return nil, nil, err
	}
	return kb.PrivateBytes, kb.PublicBytes, nil
}

type policyDoc struct {
	Default    []map[string]any                       `json:"default"`
	Transports map[string]map[string][]map[string]any `json:"transports"`
}

func parsePolicy(t *testing.T, b []byte) policyDoc {
	t.Helper()
	var d policyDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRejectMode: reject by default; Red Hat's signature requirements kept; the base's unsigned acceptances dropped
// (the base's own entry for ghcr.io/acme/imagemode, docker-daemon); local transports explicit; no registry-wide
// unsigned entry, ever.
func TestRejectMode(t *testing.T) {
	base, err := os.ReadFile("testdata/rhel-base-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg()
	c.Mode = ""
	out, err := Merge(base, c)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "rhel-reject-policy.json.golden", out)
	d := parsePolicy(t, out)
	if len(d.Default) != 1 || d.Default[0]["type"] != "reject" {
		t.Errorf("default %v", d.Default)
	}
	docker := d.Transports["docker"]
	if docker["registry.redhat.io"][0]["type"] != "signedBy" {
		t.Errorf("Red Hat's key was dropped: %v", docker)
	}
	if docker["ghcr.io/acme/imagemode"][0]["type"] != "sigstoreSigned" {
		t.Errorf("the namespace is not signature-only: %v", docker["ghcr.io/acme/imagemode"])
	}
	for scope, req := range docker {
		if req[0]["type"] == "insecureAcceptAnything" {
			t.Errorf("unsigned images accepted in %s", scope)
		}
	}
	if _, ok := d.Transports["docker-daemon"]; ok {
		t.Error("docker-daemon kept accepting anything")
	}
	for _, tr := range LocalTransports {
		if d.Transports[tr][""][0]["type"] != "insecureAcceptAnything" {
			t.Errorf("local transport %s not listed", tr)
		}
	}
}

// TestRejectModeAllowBase: the stock base repository is accepted unsigned for exactly that repository (CentOS), or
// left to the base's own key when one covers it (RHEL on registry.redhat.io).
func TestRejectModeAllowBase(t *testing.T) {
	c := cfg()
	c.Mode, c.AllowBase, c.BaseRepository = ModeReject, true, "quay.io/centos-bootc/centos-bootc"
	out, err := Merge(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	docker := parsePolicy(t, out).Transports["docker"]
	if docker["quay.io/centos-bootc/centos-bootc"][0]["type"] != "insecureAcceptAnything" || docker["quay.io"] != nil {
		t.Errorf("CentOS base: %v", docker)
	}
	base, err := os.ReadFile("testdata/rhel-base-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	c.BaseRepository = "registry.redhat.io/rhel10/rhel-bootc"
	out, err = Merge(base, c)
	if err != nil {
		t.Fatal(err)
	}
	docker = parsePolicy(t, out).Transports["docker"]
	if _, ok := docker["registry.redhat.io/rhel10/rhel-bootc"]; ok {
		t.Errorf("an entry below Red Hat's signed registry would weaken it: %v", docker["registry.redhat.io/rhel10/rhel-bootc"])
	}
	for _, bad := range []Config{
		{PublicKey: []byte(testKey), Namespaces: []string{"ghcr.io/a/b"}, AllowBase: true, BaseRepository: "quay.io"},
		{PublicKey: []byte(testKey), Namespaces: []string{"ghcr.io/a/b"}, AllowBase: true, BaseRepository: "quay.io/x", Mode: ModeNamespaces},
		{PublicKey: []byte(testKey), Namespaces: []string{"ghcr.io/a/b"}, Mode: "strict"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
