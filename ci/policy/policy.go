// Package policy renders the host trust policy the SOE image ships, so that bootc (through containers/image) refuses
// to switch or upgrade to an image that is not signed by the project key: /etc/containers/policy.json with a
// sigstoreSigned requirement (signedIdentity matchRepository) per trusted namespace, merged into the base image's
// own policy (RHEL's keeps GPG signedBy entries for registry.redhat.io that an overwrite would drop),
// /etc/containers/registries.d/imagemode.yaml turning on use-sigstore-attachments (required even to verify), and
// the public key under /etc/pki/containers/.
package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// Paths on the host.
const (
	PolicyPath      = "/etc/containers/policy.json"
	RegistriesDPath = "/etc/containers/registries.d/imagemode.yaml"
	KeyPath         = "/etc/pki/containers/imagemode.pub"
	ReadmePath      = "/usr/share/imagemode/trust.txt"
)

// ContextDir is the folder of the root layer's build context the files are injected into; the root layer's
// Containerfile copies it with `COPY imagemode-trust/ /`.
const ContextDir = "imagemode-trust"

// Modes of the host policy.
const (
	// ModeReject refuses every image by default: only images from the trusted namespaces signed by the key, what the
	// base policy itself accepts only with a signature (RHEL: Red Hat's GPG key on registry.redhat.io), and local
	// transports (containers-storage, oci, oci-archive, dir, docker-archive: images already on the host).
	ModeReject = "reject"
	// ModeNamespaces keeps the base image's default (usually accept anything) and requires signatures only inside
	// the trusted namespaces: an unsigned image anywhere else, a sibling repository included, is accepted.
	ModeNamespaces = "namespaces"
)

// LocalTransports are accepted without signatures in ModeReject: what they name is already on the host, put there
// by its administrator (podman load, bootc switch --transport containers-storage).
var LocalTransports = []string{"containers-storage", "dir", "docker-archive", "oci", "oci-archive"}

// Config is what the host must trust.
type Config struct {
	// PublicKey is the cosign public key (PEM).
	PublicKey []byte
	// Namespaces are the repository prefixes whose images must be signed (candidates' and releases').
	Namespaces []string
	// Mode is ModeReject (default) or ModeNamespaces.
	Mode string
	// AllowBase, in ModeReject, lets hosts switch back to the stock base image: BaseRepository is accepted as the
	// base policy accepts it — with its own signature requirement when it has one for that repository or registry,
	// else unsigned, for exactly that repository.
	AllowBase      bool
	BaseRepository string
}

func (c Config) mode() string {
	if c.Mode == "" {
		return ModeReject
	}
	return c.Mode
}

var nsRE = regexp.MustCompile(`^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)

// Validate checks the namespaces and the key.
func (c Config) Validate() error {
	if len(c.Namespaces) == 0 {
		return fmt.Errorf("--trusted-namespace: give at least one repository prefix whose images hosts must verify")
	}
	for _, ns := range c.Namespaces {
		ns = strings.TrimSuffix(ns, "/")
		host, _, _ := strings.Cut(ns, "/")
		if !nsRE.MatchString(ns) || !(strings.ContainsAny(host, ".:") || host == "localhost") {
			return fmt.Errorf("--trusted-namespace %q: want a registry host and optional path, e.g. ghcr.io/acme/imagemode (no tag, digest or wildcard)", ns)
		}
	}
	if _, err := cryptoutils.UnmarshalPEMToPublicKey(c.PublicKey); err != nil {
		return fmt.Errorf("the trust key is not a PEM public key: %w", err)
	}
	switch c.mode() {
	case ModeReject, ModeNamespaces:
	default:
		return fmt.Errorf("--trust-mode %q: want %s or %s", c.Mode, ModeReject, ModeNamespaces)
	}
	if c.AllowBase {
		if c.mode() != ModeReject {
			return fmt.Errorf("--trust-allow-base needs --trust-mode %s (the other mode accepts the base anyway)", ModeReject)
		}
		host, path, _ := strings.Cut(c.BaseRepository, "/")
		if path == "" || !nsRE.MatchString(c.BaseRepository) || !strings.ContainsAny(host, ".:") {
			return fmt.Errorf("the base image's repository %q cannot be allowed: entries name a repository, never a whole registry", c.BaseRepository)
		}
	}
	return nil
}

func (c Config) namespaces() []string {
	seen := map[string]bool{}
	var out []string
	for _, ns := range c.Namespaces {
		ns = strings.TrimSuffix(ns, "/")
		if !seen[ns] {
			seen[ns] = true
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}

// defaultPolicy is what containers-common ships when a base image has none.
const defaultPolicy = `{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker-daemon":{"":[{"type":"insecureAcceptAnything"}]}}}`

// Requirement is the policy requirement for one namespace.
func Requirement() json.RawMessage {
	return json.RawMessage(`[{"type":"sigstoreSigned","keyPath":"` + KeyPath + `","signedIdentity":{"type":"matchRepository"}}]`)
}

// Merge returns base (the base image's policy.json; empty when it has none) with a sigstoreSigned requirement for
// every namespace in the docker transport. Everything else of base is kept; an existing entry for exactly one of
// the namespaces is replaced. The output is deterministic (sorted keys, two-space indent).
func Merge(base []byte, c Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(base)) == 0 {
		base = []byte(defaultPolicy)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(base, &doc); err != nil {
		return nil, fmt.Errorf("the base image's %s is not valid JSON: %w", PolicyPath, err)
	}
	if _, ok := doc["default"]; !ok {
		return nil, fmt.Errorf("the base image's %s has no \"default\" requirement", PolicyPath)
	}
	transports := map[string]map[string]json.RawMessage{}
	if raw, ok := doc["transports"]; ok {
		if err := json.Unmarshal(raw, &transports); err != nil {
			return nil, fmt.Errorf("the base image's %s: reading \"transports\": %w", PolicyPath, err)
		}
	}
	if transports["docker"] == nil {
		transports["docker"] = map[string]json.RawMessage{}
	}
	if c.mode() == ModeReject {
		doc["default"] = json.RawMessage(`[{"type":"reject"}]`)
		// Keep what the base accepts only with a signature; drop what it accepts unsigned.
		for name, scopes := range transports {
			for scope, req := range scopes {
				if !requiresSignature(req) {
					delete(scopes, scope)
				}
			}
			if len(scopes) == 0 && name != "docker" {
				delete(transports, name)
			}
		}
		for _, t := range LocalTransports {
			transports[t] = map[string]json.RawMessage{"": json.RawMessage(`[{"type":"insecureAcceptAnything"}]`)}
		}
		if c.AllowBase && !coveredBySignature(transports["docker"], c.BaseRepository) {
			transports["docker"][c.BaseRepository] = json.RawMessage(`[{"type":"insecureAcceptAnything"}]`)
		}
	}
	for _, ns := range c.namespaces() {
		transports["docker"][ns] = Requirement()
	}
	t, err := json.Marshal(transports)
	if err != nil {
		return nil, fmt.Errorf("encoding the policy: %w", err)
	}
	doc["transports"] = t
	flat, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding the policy: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, flat, "", "  "); err != nil {
		return nil, fmt.Errorf("formatting the policy: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// requiresSignature says whether a requirement list accepts only signed images.
func requiresSignature(req json.RawMessage) bool {
	var rs []struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(req, &rs); err != nil || len(rs) == 0 {
		return false
	}
	for _, r := range rs {
		if r.Type != "signedBy" && r.Type != "sigstoreSigned" {
			return false
		}
	}
	return true
}

// coveredBySignature says whether a docker scope for repo (the repository, a namespace above it, or its registry)
// already requires a signature: the base's own key then decides, and no unsigned entry is added below it.
func coveredBySignature(docker map[string]json.RawMessage, repo string) bool {
	for scope := repo; scope != ""; {
		if req, ok := docker[scope]; ok {
			return requiresSignature(req)
		}
		i := strings.LastIndex(scope, "/")
		if i < 0 {
			break
		}
		scope = scope[:i]
	}
	return false
}

// RegistriesD returns the registries.d file that makes containers/image read cosign signatures from the
// sha256-<digest>.sig tags of every namespace.
func RegistriesD(c Config) []byte {
	var b strings.Builder
	b.WriteString("# imagemode: cosign signatures are stored as sha256-<digest>.sig tags next to the images.\n")
	b.WriteString("# containers/image (podman, skopeo, bootc) reads them only with use-sigstore-attachments.\n")
	b.WriteString("docker:\n")
	for _, ns := range c.namespaces() {
		fmt.Fprintf(&b, "  %s:\n    use-sigstore-attachments: true\n", ns)
	}
	return []byte(b.String())
}

// Fingerprint is the SHA-256 of the key's PEM, for humans and reports.
func Fingerprint(pubPEM []byte) string {
	sum := sha256.Sum256(bytes.TrimSpace(pubPEM))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Files returns the files to inject into the root layer's build context (paths under ContextDir). With no key,
// only a note saying that no signature policy is installed, so the Containerfile's COPY always has a source.
func Files(basePolicy []byte, c *Config) (map[string][]byte, error) {
	out := map[string][]byte{}
	if c == nil {
		out[ContextDir+ReadmePath] = []byte("imagemode: this image ships no signature policy; it was built without --trust-key.\n")
		return out, nil
	}
	pol, err := Merge(basePolicy, *c)
	if err != nil {
		return nil, err
	}
	out[ContextDir+PolicyPath] = pol
	out[ContextDir+RegistriesDPath] = RegistriesD(*c)
	out[ContextDir+KeyPath] = append(bytes.TrimSpace(c.PublicKey), '\n')
	note := fmt.Sprintf("imagemode: bootc and podman on this host accept images from %s only when signed by the key %s (%s).\n",
		strings.Join(c.namespaces(), ", "), KeyPath, Fingerprint(c.PublicKey))
	if c.mode() == ModeReject {
		note += "Every other image is refused, except what the base image's own policy accepts with a signature and images " +
			"already on the host (" + strings.Join(LocalTransports, ", ") + ")"
		if c.AllowBase {
			note += "; the stock base image " + c.BaseRepository + " is accepted as its vendor's policy accepts it"
		}
		note += ".\n"
	} else {
		note += "Images elsewhere are accepted as the base image's policy says (mode namespaces).\n"
	}
	out[ContextDir+ReadmePath] = []byte(note)
	return out, nil
}
