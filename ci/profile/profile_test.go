package profile

import (
	"strings"
	"testing"
)

func TestBuiltins(t *testing.T) {
	want := map[string]string{
		"rhel-9.6":         "registry.redhat.io/rhel9/rhel-bootc:9.6",
		"rhel-10":          "registry.redhat.io/rhel10/rhel-bootc:10.1",
		"centos-stream-9":  "quay.io/centos-bootc/centos-bootc:stream9",
		"centos-stream-10": "quay.io/centos-bootc/centos-bootc:stream10",
	}
	for name, base := range want {
		p, err := Resolve(name, "")
		if err != nil {
			t.Fatalf("Resolve(%q): %v", name, err)
		}
		if p.BaseImage != base {
			t.Errorf("%s base = %q, want %q", name, p.BaseImage, base)
		}
	}
	if got := len(All()); got != len(want) {
		t.Errorf("All() has %d profiles, want %d", got, len(want))
	}
	p, err := Resolve("", "")
	if err != nil || p.Name != Default {
		t.Fatalf("default profile = %q, %v", p.Name, err)
	}
	if p.Subscription || p.RegistryAuth {
		t.Errorf("the default profile must need no credentials: %+v", p)
	}
}

func TestMajorVersions(t *testing.T) {
	for name, major := range map[string]int{"rhel-9.6": 9, "rhel-10": 10, "centos-stream-9": 9, "centos-stream-10": 10} {
		p, _ := Resolve(name, "")
		if p.Major != major {
			t.Errorf("%s major = %d, want %d", name, p.Major, major)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	cases := []struct{ name, base, want string }{
		{"fedora-99", "", `unknown --profile "fedora-99": choose one of centos-stream-10, centos-stream-9, rhel-10, rhel-9.6`},
		{"Bad Name", "", `--profile "Bad Name"`},
		{"centos-stream-9", "centos-bootc:stream9", `--base-image "centos-bootc:stream9": use a fully qualified reference`},
		{"mine", "has space/x y", `--base-image "has space/x y"`},
	}
	for _, tc := range cases {
		_, err := Resolve(tc.name, tc.base)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Resolve(%q, %q) = %v, want error containing %q", tc.name, tc.base, err, tc.want)
		}
	}
}

func TestCustomAndOverride(t *testing.T) {
	p, err := Resolve("standin", "127.0.0.1:5000/standin/base:bookworm")
	if err != nil {
		t.Fatal(err)
	}
	if p.Family != "custom" || p.BaseImage != "127.0.0.1:5000/standin/base:bookworm" || p.Major != 0 {
		t.Errorf("custom profile = %+v", p)
	}
	if err := p.Check(Inputs{}); err != nil {
		t.Errorf("custom profile needs nothing: %v", err)
	}
	// Overriding a RHEL base with a mirror keeps the subscription need but drops the registry.redhat.io login.
	p, err = Resolve("rhel-9.6", "mirror.example.com/rhel9/rhel-bootc:9.6")
	if err != nil {
		t.Fatal(err)
	}
	if p.RegistryAuth || !p.Subscription || p.Name != "rhel-9.6" {
		t.Errorf("overridden rhel profile = %+v", p)
	}
	if p.BaseRegistry() != "mirror.example.com" {
		t.Errorf("base registry = %q", p.BaseRegistry())
	}
}

func TestRHELNeedsCredentialsAndEntitlement(t *testing.T) {
	p, _ := Resolve("rhel-9.6", "")
	full := Inputs{
		RegistryAuth: []string{"registry.redhat.io"},
		Secrets:      []string{SecretEntitlementCert, SecretEntitlementKey, SecretRHSMCA},
	}
	if err := p.Check(full); err != nil {
		t.Fatalf("complete inputs refused: %v", err)
	}
	cases := []struct {
		name string
		in   Inputs
		want []string
		not  []string
	}{
		{"nothing", Inputs{}, []string{"credentials for registry.redhat.io", "--base-registry-password", "--entitlement-cert, --entitlement-key, --rhsm-ca"}, nil},
		{"no auth", Inputs{Secrets: full.Secrets}, []string{"credentials for registry.redhat.io"}, []string{"--entitlement-cert"}},
		{"no key", Inputs{RegistryAuth: full.RegistryAuth, Secrets: []string{SecretEntitlementCert, SecretRHSMCA}}, []string{"--entitlement-key"}, []string{"--entitlement-cert", "credentials for"}},
		{"auth for another host", Inputs{RegistryAuth: []string{"quay.io"}, Secrets: full.Secrets}, []string{"credentials for registry.redhat.io"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Check(tc.in)
			if err == nil {
				t.Fatal("expected an error")
			}
			if !strings.Contains(err.Error(), `profile "rhel-9.6"`) {
				t.Errorf("error does not name the profile: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q: %v", w, err)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(err.Error(), n) {
					t.Errorf("error wrongly says %q: %v", n, err)
				}
			}
		})
	}
	c, _ := Resolve("centos-stream-10", "")
	if err := c.Check(Inputs{}); err != nil {
		t.Errorf("centos needs nothing: %v", err)
	}
}
