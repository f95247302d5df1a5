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
// follow its floating tag in repoOf(layer): the same comparison as Differ.Run, with the candidate's packages from the
// SBOM verification already read.
func (p *Promoter) hostChanges(ctx context.Context, checked []Checked, repoOf func(string) string) ([]LayerChanges, error) {
	d := &Differ{Reg: p.reg, Verifier: p.verifier}
	var out []LayerChanges
	for _, c := range checked {
		lc, err := d.compare(ctx, c.Profile, c.Layer, repoOf(c.Layer)+":"+c.Profile, c.Digest, c.packages)
		if err != nil {
			return out, err
		}
		out = append(out, lc)
	}
	return out, nil
}

// signedPackages reads the packages of the newest SBOM signed by the key on ref. found is false when ref has no SBOM
// the verifier accepts (err says why, and may be the registry not answering); with found, err says the SBOM cannot
// be read.
func signedPackages(ctx context.Context, v signing.Verifier, ref string) (pkgs []sbom.Package, found bool, err error) {
	sts, err := v.Attestations(ctx, ref, sbom.PredicateType)
	if err != nil {
		return nil, false, err
	}
	// The signer keeps the newest attestations of a type last.
	pkgs, err = sbom.Packages(sts[len(sts)-1].Predicate)
	return pkgs, true, err
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
		pkgs, found, err := signedPackages(ctx, d.Verifier, ref)
		switch {
		case !found && err != nil:
			return nil, "", fmt.Errorf("the SBOM of %s: %w", ref, err)
		case err != nil:
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
		cur, _, err := d.Packages(ctx, l.Ref)
		if err != nil {
			return out, fmt.Errorf("layer %q: %w", l.Name, err)
		}
		lc, err := d.compare(ctx, rep.Profile, l.Name, strings.TrimSuffix(releaseRegistry, "/")+"/"+l.Name+":"+rep.Profile, l.Digest, cur)
		if err != nil {
			return out, err
		}
		out = append(out, lc)
	}
	return out, nil
}

// compare says what moving the hosts that follow the tag follows to the digest to (holding the packages cur)
// changes: the package difference from the release the tag names now.
func (d *Differ) compare(ctx context.Context, prof, layer, follows, to string, cur []sbom.Package) (LayerChanges, error) {
	lc := LayerChanges{Profile: prof, Layer: layer, Follows: follows, To: to, Changes: []sbom.Change{}}
	ok, err := d.Reg.Exists(ctx, follows)
	if err != nil {
		return lc, fmt.Errorf("looking up %s: %w", follows, err)
	}
	if !ok {
		lc.Note = fmt.Sprintf("first release: %d packages", len(cur))
		return lc, nil
	}
	if lc.From, err = d.Reg.Digest(ctx, follows); err != nil {
		return lc, fmt.Errorf("resolving %s: %w", follows, err)
	}
	if lc.From == to {
		lc.Note = "unchanged: hosts run this digest already"
		return lc, nil
	}
	old, _, err := d.Packages(ctx, registry.DigestRef(follows[:strings.LastIndex(follows, ":")], lc.From))
	switch {
	case registry.IsUnreachable(err):
		return lc, fmt.Errorf("the registry is unreachable while reading the SBOM of the current release %s: %w", lc.From, err)
	case err != nil:
		lc.Note = "package changes unknown: " + err.Error()
	default:
		lc.Changes = sbom.Diff(old, cur)
	}
	return lc, nil
}
