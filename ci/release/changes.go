package release

import (
	"context"
	"fmt"
	"strings"

	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/sbom"
	"github.com/imagemode/imagemode/ci/signing"
)

// LayerChanges is what promoting one layer of one profile changes on the hosts that follow its floating tag
// <repository>:<profile> (`bootc switch` to it once, then every `bootc upgrade`): the package difference between
// the release the tag points at now and the candidate, from their signed SBOMs.
type LayerChanges struct {
	Profile string `json:"profile"`
	Layer   string `json:"layer"`
	// Follows is the floating tag hosts follow.
	Follows string `json:"follows"`
	// From is the digest the floating tag points at now ("" before the first release), To the candidate's.
	From    string        `json:"from,omitempty"`
	To      string        `json:"to"`
	Changes []sbom.Change `json:"changes"`
	// Note says why there is no package list to compare with: the first release, the same digest, no signed SBOM.
	Note string `json:"note,omitempty"`
}

// Summary is one line: the counts, or the note.
func (c LayerChanges) Summary() string {
	if c.Note != "" {
		return c.Note
	}
	return sbom.Summary(c.Changes)
}

// hostChanges computes, for every verified layer, the package changes its promotion brings to the hosts that
// follow its floating tag in repoOf(layer).
func (p *Promoter) hostChanges(ctx context.Context, checked []Checked, repoOf func(string) string) ([]LayerChanges, error) {
	var out []LayerChanges
	for _, c := range checked {
		lc := LayerChanges{Profile: c.Profile, Layer: c.Layer, Follows: repoOf(c.Layer) + ":" + c.Profile, To: c.Digest, Changes: []sbom.Change{}}
		cur, err := p.currentDigest(ctx, lc.Follows)
		if err != nil {
			return out, fmt.Errorf("looking up %s: %w", lc.Follows, err)
		}
		lc.From = cur
		switch {
		case cur == "":
			lc.Note = fmt.Sprintf("first release: %d packages", len(c.packages))
		case cur == c.Digest:
			lc.Note = "unchanged: hosts run this digest already"
		default:
			old, why, err := p.releasedPackages(ctx, registry.DigestRef(repoOf(c.Layer), cur))
			if err != nil {
				return out, err
			}
			if why != "" {
				lc.Note = why
			} else {
				lc.Changes = sbom.Diff(old, c.packages)
			}
		}
		out = append(out, lc)
	}
	return out, nil
}

// releasedPackages reads the packages of a released digest from its SBOM signed by the key; why says why there
// are none (a release made before SBOMs were attested).
func (p *Promoter) releasedPackages(ctx context.Context, ref string) ([]sbom.Package, string, error) {
	sts, err := p.verifier.Attestations(ctx, ref, sbom.PredicateType)
	if err != nil {
		if registry.IsUnreachable(err) {
			return nil, "", fmt.Errorf("the registry is unreachable while reading the SBOM of %s: %w", ref, err)
		}
		return nil, fmt.Sprintf("package changes unknown: the current release %s has no SBOM signed by the key", short(ref[strings.LastIndex(ref, "@")+1:])), nil
	}
	pkgs, err := sbom.Packages(sts[len(sts)-1].Predicate)
	if err != nil {
		return nil, fmt.Sprintf("package changes unknown: the SBOM of the current release cannot be read (%v)", err), nil
	}
	return pkgs, "", nil
}

// ChangesText renders package changes for people: one line per layer, then one per package.
func ChangesText(cs []LayerChanges) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "%s %s (hosts following %s): %s\n", c.Layer, c.Profile, c.Follows, c.Summary())
		for _, ch := range c.Changes {
			fmt.Fprintf(&b, "    %s\n", ch)
		}
	}
	return b.String()
}

// ChangesMarkdown renders package changes for a GitHub job summary.
func ChangesMarkdown(title string, cs []LayerChanges) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n| layer | profile | hosts following | changes |\n| --- | --- | --- | --- |\n", title)
	for _, c := range cs {
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s |\n", c.Layer, c.Profile, c.Follows, c.Summary())
	}
	for _, c := range cs {
		if len(c.Changes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n<details><summary>%s %s: %s</summary>\n\n| | package | from | to |\n| --- | --- | --- | --- |\n", c.Layer, c.Profile, sbom.Summary(c.Changes))
		for _, ch := range c.Changes {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", ch.Kind, ch.Name, ch.From, ch.To)
		}
		b.WriteString("\n</details>\n")
	}
	return b.String()
}

// Differ compares the packages of images: their SBOMs signed by the key when there is a verifier, else SBOMs
// made from the images themselves.
type Differ struct {
	Reg *registry.Client
	// Verifier, when set, makes only SBOMs signed by the key count.
	Verifier    signing.Verifier
	ToolVersion string
}

// Packages returns the packages of the image ref and where they were read from.
func (d *Differ) Packages(ctx context.Context, ref string) ([]sbom.Package, string, error) {
	if d.Verifier != nil {
		sts, err := d.Verifier.Attestations(ctx, ref, sbom.PredicateType)
		if err != nil {
			return nil, "", fmt.Errorf("the SBOM of %s: %w", ref, err)
		}
		pkgs, err := sbom.Packages(sts[len(sts)-1].Predicate)
		if err != nil {
			return nil, "", fmt.Errorf("the signed SBOM of %s: %w", ref, err)
		}
		return pkgs, "signed SBOM", nil
	}
	img, err := d.Reg.Image(ctx, ref)
	if err != nil {
		return nil, "", err
	}
	doc, err := sbom.Generate(ctx, img, ref, d.ToolVersion)
	if err != nil {
		return nil, "", err
	}
	pkgs, err := sbom.Packages(doc)
	return pkgs, "SBOM made from the image", err
}

// Diff is the package difference from the image from to the image to.
func (d *Differ) Diff(ctx context.Context, from, to string) ([]sbom.Change, error) {
	old, _, err := d.Packages(ctx, from)
	if err != nil {
		return nil, err
	}
	cur, _, err := d.Packages(ctx, to)
	if err != nil {
		return nil, err
	}
	return sbom.Diff(old, cur), nil
}

// Run computes, for every layer of a run, the package changes from the release its floating tag
// <releaseRegistry>/<layer>:<profile> names now to the run's digest: what promoting the run would change on hosts.
func (d *Differ) Run(ctx context.Context, rep *report.Report, releaseRegistry string) ([]LayerChanges, error) {
	if releaseRegistry == "" {
		releaseRegistry = rep.Registry
	}
	var out []LayerChanges
	for _, l := range rep.Layers {
		lc := LayerChanges{Profile: rep.Profile, Layer: l.Name, Follows: strings.TrimSuffix(releaseRegistry, "/") + "/" + l.Name + ":" + rep.Profile,
			To: l.Digest, Changes: []sbom.Change{}}
		ok, err := d.Reg.Exists(ctx, lc.Follows)
		if err != nil {
			return out, fmt.Errorf("looking up %s: %w", lc.Follows, err)
		}
		cur, _, err := d.Packages(ctx, l.Ref)
		if err != nil {
			return out, fmt.Errorf("layer %q: %w", l.Name, err)
		}
		if !ok {
			lc.Note = fmt.Sprintf("first release: %d packages", len(cur))
			out = append(out, lc)
			continue
		}
		if lc.From, err = d.Reg.Digest(ctx, lc.Follows); err != nil {
			return out, fmt.Errorf("resolving %s: %w", lc.Follows, err)
		}
		if lc.From == l.Digest {
			lc.Note = "unchanged: hosts run this digest already"
			out = append(out, lc)
			continue
		}
		old, _, err := d.Packages(ctx, registry.DigestRef(lc.Follows[:strings.LastIndex(lc.Follows, ":")], lc.From))
		if err != nil {
			if registry.IsUnreachable(err) {
				return out, err
			}
			lc.Note = "package changes unknown: " + err.Error()
		} else {
			lc.Changes = sbom.Diff(old, cur)
		}
		out = append(out, lc)
	}
	return out, nil
}
