// Package profile names the base operating systems a layer family can be built on (RHEL 9.6, RHEL 10, CentOS
// Stream 9 and 10, or any bootc image given with --base-image) and checks, before anything is built, that a profile
// has what it needs: registry credentials and subscription material for RHEL.
package profile

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Default is the profile used when none is given: CentOS Stream 9 needs no credentials.
const Default = "centos-stream-9"

// Build secret ids. The Containerfiles mount them with `RUN --mount=type=secret,id=<id>,target=...`, and the
// builders give each secret exactly this id (Dagger matches a Containerfile's secret id to the secret's name).
const (
	SecretEntitlementCert = "entitlement-cert"
	SecretEntitlementKey  = "entitlement-key"
	SecretRHSMCA          = "rhsm-ca"
	SecretPasswordHash    = "bootc-user-password-hash"
)

// Profile is one base operating system.
type Profile struct {
	// Name is used in tags (sha-<commit>-<name>, X.Y.Z-<name>) and in the channel tag.
	Name string `json:"name"`
	// BaseImage is the bootc base image the root layer is built FROM (resolved to a digest before building).
	BaseImage string `json:"baseImage"`
	// Family is "rhel", "centos" or "custom".
	Family string `json:"family"`
	// Major is the OS major version (9, 10); 0 when unknown (custom base images). Release channels never cross it.
	Major int `json:"major,omitempty"`
	// Subscription is true when dnf inside the build needs RHEL entitlement certificates.
	Subscription bool `json:"subscription"`
	// RegistryAuth is true when pulling the base image needs credentials (registry.redhat.io).
	RegistryAuth bool `json:"registryAuth"`
}

// BaseRegistry is the registry host of the base image.
func (p Profile) BaseRegistry() string {
	host, _, _ := strings.Cut(p.BaseImage, "/")
	return host
}

var builtin = []Profile{
	{Name: "rhel-9.6", BaseImage: "registry.redhat.io/rhel9/rhel-bootc:9.6", Family: "rhel", Major: 9, Subscription: true, RegistryAuth: true},
	{Name: "rhel-10", BaseImage: "registry.redhat.io/rhel10/rhel-bootc:10.1", Family: "rhel", Major: 10, Subscription: true, RegistryAuth: true},
	{Name: "centos-stream-9", BaseImage: "quay.io/centos-bootc/centos-bootc:stream9", Family: "centos", Major: 9},
	{Name: "centos-stream-10", BaseImage: "quay.io/centos-bootc/centos-bootc:stream10", Family: "centos", Major: 10},
}

// All returns the built-in profiles, sorted by name.
func All() []Profile {
	out := append([]Profile(nil), builtin...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names returns the built-in profile names, sorted.
func Names() []string {
	var out []string
	for _, p := range All() {
		out = append(out, p.Name)
	}
	return out
}

var nameRE = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`)

// ValidateName checks a profile name: it becomes part of tags (sha-<commit>-<profile>, X.Y.Z-<profile>).
func ValidateName(name string) error {
	if !nameRE.MatchString(name) || len(name) > 40 {
		return fmt.Errorf("--profile %q: use lowercase letters, digits and single . _ - between them (at most 40 characters)", name)
	}
	return nil
}

// Resolve returns the profile to build: a built-in one by name, optionally with its base image replaced by
// baseImage, or — when name is not built in and baseImage is set — a custom profile of that name.
func Resolve(name, baseImage string) (Profile, error) {
	if name == "" {
		name = Default
	}
	if err := ValidateName(name); err != nil {
		return Profile{}, err
	}
	if baseImage != "" {
		if err := checkRef(baseImage); err != nil {
			return Profile{}, fmt.Errorf("--base-image %q: %w", baseImage, err)
		}
	}
	for _, p := range builtin {
		if p.Name == name {
			if baseImage != "" {
				p.BaseImage = baseImage
				if !strings.HasPrefix(baseImage, "registry.redhat.io/") {
					p.RegistryAuth = false
				}
			}
			return p, nil
		}
	}
	if baseImage == "" {
		return Profile{}, fmt.Errorf("unknown --profile %q: choose one of %s, or pass --base-image to build on another bootc image", name, strings.Join(Names(), ", "))
	}
	return Profile{Name: name, BaseImage: baseImage, Family: "custom"}, nil
}

func checkRef(ref string) error {
	if strings.ContainsAny(ref, " \t\n") {
		return fmt.Errorf("an image reference has no spaces")
	}
	host, rest, ok := strings.Cut(ref, "/")
	if !ok || rest == "" || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return fmt.Errorf("use a fully qualified reference such as quay.io/org/image:tag")
	}
	return nil
}

// Inputs says which credentials and secrets the caller supplied; only their presence matters here.
type Inputs struct {
	// RegistryAuth lists the registry hosts for which credentials were given.
	RegistryAuth []string
	// Secrets lists the build secret ids supplied.
	Secrets []string
}

func (in Inputs) hasAuth(host string) bool {
	for _, h := range in.RegistryAuth {
		if h == host {
			return true
		}
	}
	return false
}

func (in Inputs) hasSecret(id string) bool {
	for _, s := range in.Secrets {
		if s == id {
			return true
		}
	}
	return false
}

// Check fails, before anything is built, when the profile needs credentials or subscription material that the
// caller did not pass. The message names the flags to pass.
func (p Profile) Check(in Inputs) error {
	var missing []string
	if p.RegistryAuth && !in.hasAuth(p.BaseRegistry()) {
		missing = append(missing, fmt.Sprintf("credentials for %s (--base-registry-username and --base-registry-password; a Red Hat registry service account works)", p.BaseRegistry()))
	}
	if p.Subscription {
		var flags []string
		for _, s := range []struct{ id, flag string }{
			{SecretEntitlementCert, "--entitlement-cert"},
			{SecretEntitlementKey, "--entitlement-key"},
			{SecretRHSMCA, "--rhsm-ca"},
		} {
			if !in.hasSecret(s.id) {
				flags = append(flags, s.flag)
			}
		}
		if len(flags) > 0 {
			missing = append(missing, fmt.Sprintf("subscription material for dnf inside the build: %s (files from a registered RHEL host: /etc/pki/entitlement/<serial>.pem, /etc/pki/entitlement/<serial>-key.pem, /etc/rhsm/ca/redhat-uep.pem; activation keys do not work inside container builds)", strings.Join(flags, ", ")))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("profile %q builds on %s and needs %s", p.Name, p.BaseImage, strings.Join(missing, "; and "))
}
