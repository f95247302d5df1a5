package sbom

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Package is one installed OS package an SBOM lists.
type Package struct {
	// Type is the package URL type: "deb" or "rpm".
	Type    string `json:"type"`
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch,omitempty"`
}

// key identifies a package across two images: two architectures of one RPM (multilib) are two packages.
func (p Package) key() string { return p.Type + "/" + p.Name + "/" + p.Arch }

// document is the part of an SPDX 2.3 JSON document read here.
type document struct {
	SPDXVersion string `json:"spdxVersion"`
	Name        string `json:"name"`
	Packages    []struct {
		Name         string `json:"name"`
		VersionInfo  string `json:"versionInfo"`
		ExternalRefs []struct {
			Category string `json:"referenceCategory"`
			Type     string `json:"referenceType"`
			Locator  string `json:"referenceLocator"`
		} `json:"externalRefs"`
	} `json:"packages"`
}

// Check says whether data is an SPDX 2.x JSON document.
func Check(data []byte) error {
	_, err := parse(data)
	return err
}

func parse(data []byte) (document, error) {
	var d document
	if err := json.Unmarshal(data, &d); err != nil {
		return d, fmt.Errorf("not an SPDX JSON document: %w", err)
	}
	if !strings.HasPrefix(d.SPDXVersion, "SPDX-2.") {
		return d, fmt.Errorf("not an SPDX 2 JSON document (spdxVersion %q)", d.SPDXVersion)
	}
	return d, nil
}

// Packages returns the OS packages (deb and rpm package URLs) an SPDX JSON document lists, sorted.
func Packages(data []byte) ([]Package, error) {
	d, err := parse(data)
	if err != nil {
		return nil, err
	}
	var out []Package
	for _, p := range d.Packages {
		for _, r := range p.ExternalRefs {
			if r.Type != "purl" {
				continue
			}
			pk, ok := fromPURL(r.Locator)
			if !ok {
				continue
			}
			if pk.Version == "" {
				pk.Version = p.VersionInfo
			}
			out = append(out, pk)
			break
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out, nil
}

// fromPURL reads pkg:deb/debian/apache2@2.4.62-1~deb12u2?arch=amd64&distro=debian-12 and
// pkg:rpm/redhat/bash@5.1.8-9.el9?arch=x86_64&epoch=1.
func fromPURL(purl string) (Package, bool) {
	rest, ok := strings.CutPrefix(purl, "pkg:")
	if !ok {
		return Package{}, false
	}
	rest, query, _ := strings.Cut(rest, "?")
	typ, rest, ok := strings.Cut(rest, "/")
	if !ok || (typ != "deb" && typ != "rpm") {
		return Package{}, false
	}
	if i := strings.Index(rest, "#"); i >= 0 { // a subpath
		rest = rest[:i]
	}
	nameVer := rest[strings.LastIndex(rest, "/")+1:]
	rawName, rawVersion, _ := strings.Cut(nameVer, "@")
	name, err := url.PathUnescape(rawName)
	if err != nil {
		return Package{}, false
	}
	version, err := url.PathUnescape(rawVersion)
	if err != nil {
		return Package{}, false
	}
	q, _ := url.ParseQuery(query)
	if e := q.Get("epoch"); e != "" && e != "0" {
		version = e + ":" + version
	}
	return Package{Type: typ, Name: name, Version: version, Arch: q.Get("arch")}, name != ""
}

// Change kinds.
const (
	Added      = "added"
	Removed    = "removed"
	Upgraded   = "upgraded"
	Downgraded = "downgraded"
)

// Change is one package that differs between two images.
type Change struct {
	Kind string `json:"kind"`
	Type string `json:"type"`
	Name string `json:"name"`
	Arch string `json:"arch,omitempty"`
	// From is the version in the old image (empty when added), To in the new one (empty when removed).
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

func (c Change) String() string {
	switch c.Kind {
	case Added:
		return fmt.Sprintf("+ %s %s", c.Name, c.To)
	case Removed:
		return fmt.Sprintf("- %s %s", c.Name, c.From)
	default:
		return fmt.Sprintf("~ %s %s → %s", c.Name, c.From, c.To)
	}
}

// Diff lists what changes from the packages old to the packages new, sorted by name (empty, not nil, when nothing
// changes).
func Diff(old, new []Package) []Change {
	before := map[string]Package{}
	for _, p := range old {
		before[p.key()] = p
	}
	out := []Change{} // JSON: [] when nothing changes
	seen := map[string]bool{}
	for _, p := range new {
		seen[p.key()] = true
		o, ok := before[p.key()]
		switch {
		case !ok:
			out = append(out, Change{Kind: Added, Type: p.Type, Name: p.Name, Arch: p.Arch, To: p.Version})
		case o.Version != p.Version:
			kind := Upgraded
			if CompareVersions(p.Type, p.Version, o.Version) < 0 {
				kind = Downgraded
			}
			out = append(out, Change{Kind: kind, Type: p.Type, Name: p.Name, Arch: p.Arch, From: o.Version, To: p.Version})
		}
	}
	for _, p := range old {
		if !seen[p.key()] {
			out = append(out, Change{Kind: Removed, Type: p.Type, Name: p.Name, Arch: p.Arch, From: p.Version})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Arch < out[j].Arch
	})
	return out
}

// Summary counts the changes by kind: "2 added, 1 upgraded" or "no package changes".
func Summary(cs []Change) string {
	n := map[string]int{}
	for _, c := range cs {
		n[c.Kind]++
	}
	var parts []string
	for _, k := range []string{Added, Removed, Upgraded, Downgraded} {
		if n[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[k], k))
		}
	}
	if len(parts) == 0 {
		return "no package changes"
	}
	return strings.Join(parts, ", ")
}
