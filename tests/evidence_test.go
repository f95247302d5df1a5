//go:build integration

package tests

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/imagemode/imagemode/ci/provenance"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/release"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/sbom"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/tests/harness"
	"github.com/imagemode/imagemode/tests/standin"
)

const evidenceBuilder = "https://example.org/imagemode-integration"

// evidenceRun builds the family in dir at commit (imagemode build-all) and signs it with `imagemode sign
// --from-report`, which attests the SBOM and provenance of every built layer. It returns the report and its file.
func evidenceRun(t *testing.T, dir, ns, commit, runID string, key keyPair) (*report.Report, string) {
	t.Helper()
	args := append([]string{"build-all", "--dir", dir, "--profile", "standin", "--base-image", env.StandinBase(t),
		"--registry", ns, "--commit", commit, "--run-id", runID, "--json"}, env.BuildahArgs()...)
	res := env.Run(t.Context(), args...)
	if res.Err != nil {
		t.Fatalf("build-all %s: %v\n%s", runID, res.Err, res.Stderr)
	}
	rep, err := report.Parse([]byte(res.Stdout))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(file, []byte(res.Stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	s := env.RunEnv(t.Context(), []string{"IMAGEMODE_KEY_PASSWORD=pw"}, "sign", "--key", key.priv, "--from-report", file, "--builder-id", evidenceBuilder)
	if s.Err != nil {
		t.Fatalf("sign --from-report %s: %v\n%s", runID, s.Err, s.Stderr)
	}
	if n := strings.Count(s.Stdout, "attested the SBOM"); n != 4 {
		t.Fatalf("sign attested %d SBOMs, want 4 (every layer was built):\n%s", n, s.Stdout)
	}
	return rep, file
}

// dpkgReports is what dpkg-query on this host says is installed in the image, read from the image's own dpkg
// database: name → version.
func dpkgReports(t *testing.T, reg *registry.Client, ref string) map[string]string {
	t.Helper()
	status, err := reg.ReadFile(t.Context(), ref, "var/lib/dpkg/status")
	if err != nil || status == nil {
		t.Fatalf("reading the dpkg database of %s: %v", ref, err)
	}
	admin := t.TempDir()
	if err := os.WriteFile(filepath.Join(admin, "status"), status, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), "dpkg-query", "--admindir", admin, "-W", "-f", `${Package}\t${Version}\t${db:Status-Status}\n`).Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	pkgs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) == 3 && f[2] == "installed" {
			pkgs[f[0]] = f[1]
		}
	}
	return pkgs
}

// signedEvidence reads a layer's SBOM packages and provenance, verified with the public key.
func signedEvidence(t *testing.T, v signing.Verifier, ref string) ([]sbom.Package, provenance.Provenance) {
	t.Helper()
	sts, err := v.Attestations(t.Context(), ref, sbom.PredicateType)
	if err != nil {
		t.Fatalf("%s: no verified SBOM: %v", ref, err)
	}
	pkgs, err := sbom.Packages(sts[0].Predicate)
	if err != nil {
		t.Fatal(err)
	}
	sts, err = v.Attestations(t.Context(), ref, provenance.PredicateType)
	if err != nil {
		t.Fatalf("%s: no verified provenance: %v", ref, err)
	}
	p, err := provenance.Parse(sts[0].Predicate)
	if err != nil {
		t.Fatal(err)
	}
	return pkgs, p
}

// buildDeb makes a Debian package (architecture all) holding one file.
func buildDeb(t *testing.T, name, version, out string) {
	t.Helper()
	root := t.TempDir()
	for path, content := range map[string]string{
		"DEBIAN/control":                    fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: imagemode tests <tests@imagemode.dev>\nDescription: a package the integration tests add\n", name, version),
		"usr/share/doc/" + name + "/README": "added by tests/evidence_test.go\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := exec.CommandContext(t.Context(), "dpkg-deb", "--root-owner-group", "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
}

// TestSBOMProvenanceAndHostChangesOnTheStandinFamily builds the stand-in family and signs it: every layer's signed
// SBOM lists exactly what dpkg reports installed in it (apache2 and mariadb-server at their versions), and its
// provenance names the commit, the Containerfile's digest and the parent and base digests. With that run released
// (its digests on the floating tags), a homepage-only change shows no package change in any layer; a package added
// in the httpd layer shows as added in httpd and homepage, not in soe or database.
func TestSBOMProvenanceAndHostChangesOnTheStandinFamily(t *testing.T) {
	ctx := t.Context()
	ns := env.Namespace(t)
	key := generateKeyTB(t, "pw")
	pub, err := os.ReadFile(key.pub)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New()
	v, err := signing.NewKeyVerifier(pub, reg)
	if err != nil {
		t.Fatal(err)
	}
	copyFamily := func() string {
		dir := filepath.Join(t.TempDir(), "containerfiles")
		if err := harness.CopyDir(standin.ContainerfilesDir(), dir); err != nil {
			t.Fatal(err)
		}
		return dir
	}

	// 1. The first run: SBOMs against dpkg, provenance against the report.
	const commitA = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0"
	dir1 := copyFamily()
	rep1, _ := evidenceRun(t, dir1, ns, commitA, "ev1", key)
	for _, l := range rep1.Layers {
		pkgs, prov := signedEvidence(t, v, l.Ref)
		fromDpkg := dpkgReports(t, reg, l.Ref)
		fromSBOM := map[string]string{}
		for _, p := range pkgs {
			if p.Type != "deb" {
				t.Errorf("%s: a %s package in a Debian image: %+v", l.Name, p.Type, p)
			}
			fromSBOM[p.Name] = p.Version
		}
		if len(fromSBOM) != len(fromDpkg) || len(fromDpkg) < 100 {
			t.Errorf("%s: the SBOM lists %d packages, dpkg reports %d installed", l.Name, len(fromSBOM), len(fromDpkg))
		}
		for name, ver := range fromDpkg {
			if fromSBOM[name] != ver {
				t.Errorf("%s: dpkg reports %s %s, the SBOM says %q", l.Name, name, ver, fromSBOM[name])
			}
		}
		for _, name := range []string{"apache2", "mariadb-server"} {
			if fromDpkg[name] == "" || fromSBOM[name] != fromDpkg[name] {
				t.Errorf("%s: %s is %q in the SBOM, %q for dpkg", l.Name, name, fromSBOM[name], fromDpkg[name])
			}
		}
		parent := ""
		if l.Parent != "" {
			p, _ := rep1.Layer(l.Parent)
			parent = p.Digest
		}
		if why := prov.Check(provenance.Expect{Layer: l.Name, Profile: "standin", Commit: commitA, ParentDigest: parent, BaseDigest: rep1.BaseDigest}); why != "" {
			t.Errorf("%s: %s", l.Name, why)
		}
		cf, err := os.ReadFile(filepath.Join(dir1, l.Name, "Containerfile"))
		if err != nil {
			t.Fatal(err)
		}
		ep := prov.BuildDefinition.ExternalParameters
		if want := fmt.Sprintf("sha256:%x", sha256.Sum256(cf)); ep.Containerfile.Digest != want || !strings.HasSuffix(ep.Containerfile.Path, l.Name+"/Containerfile") {
			t.Errorf("%s: provenance Containerfile %+v, want digest %s", l.Name, ep.Containerfile, want)
		}
		if prov.RunDetails.Builder.ID != evidenceBuilder || prov.RunDetails.Metadata.InvocationID != "ev1" {
			t.Errorf("%s: run details %+v", l.Name, prov.RunDetails)
		}
		t.Logf("%s: %d packages (apache2 %s, mariadb-server %s)", l.Name, len(pkgs), fromSBOM["apache2"], fromSBOM["mariadb-server"])
	}

	// 2. Release the first run: its digests on the floating tags hosts follow.
	for _, l := range rep1.Layers {
		if err := reg.Tag(ctx, l.Ref, "standin"); err != nil {
			t.Fatal(err)
		}
	}

	// 3. A homepage-only change: no package changes anywhere (`imagemode diff --from-report`, the CLI).
	dir2 := copyFamily()
	page := filepath.Join(dir2, "homepage", "html", "index.html")
	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, append(data, []byte("\n<!-- a homepage-only change -->\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	_, file2 := evidenceRun(t, dir2, ns, "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0", "ev2", key)
	res := env.Run(ctx, "diff", "--from-report", file2, "--public-key", key.pub, "--json")
	if res.Err != nil {
		t.Fatalf("diff --from-report: %v\n%s", res.Err, res.Stderr)
	}
	var cs []release.LayerChanges
	if err := json.Unmarshal([]byte(res.Stdout), &cs); err != nil {
		t.Fatalf("diff --json: %v\n%s", err, res.Stdout)
	}
	if len(cs) != 4 {
		t.Fatalf("changes for %d layers:\n%s", len(cs), res.Stdout)
	}
	for _, c := range cs {
		if len(c.Changes) != 0 || (c.Note != "" && !strings.HasPrefix(c.Note, "unchanged")) {
			t.Errorf("a homepage-only change: %s shows %s %+v", c.Layer, c.Summary(), c.Changes)
		}
		if c.From != rep1.Layers[indexOf(rep1, c.Layer)].Digest {
			t.Errorf("%s: compared with %s, not the released %s", c.Layer, c.From, rep1.Layers[indexOf(rep1, c.Layer)].Digest)
		}
	}

	// 4. A package added in the httpd layer: added in httpd and homepage, nothing in soe or database.
	dir3 := copyFamily()
	if err := os.MkdirAll(filepath.Join(dir3, "httpd", "files", "usr", "share", "imagemode-it"), 0o755); err != nil {
		t.Fatal(err)
	}
	buildDeb(t, "imagemode-marker", "1.0-1", filepath.Join(dir3, "httpd", "files", "usr", "share", "imagemode-it", "marker.deb"))
	cf := filepath.Join(dir3, "httpd", "Containerfile")
	data, err = os.ReadFile(cf)
	if err != nil {
		t.Fatal(err)
	}
	const lint = "RUN bootc container lint"
	if !strings.Contains(string(data), lint) {
		t.Fatalf("%s does not end with %s", cf, lint)
	}
	data = []byte(strings.Replace(string(data), lint, "RUN dpkg -i /usr/share/imagemode-it/marker.deb && rm -rf /usr/share/imagemode-it\n\n"+lint, 1))
	if err := os.WriteFile(cf, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rep3, _ := evidenceRun(t, dir3, ns, "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0", "ev3", key)
	got, err := (&release.Differ{Reg: reg, Verifier: v}).Run(ctx, rep3, "")
	if err != nil {
		t.Fatal(err)
	}
	added := sbom.Change{Kind: sbom.Added, Type: "deb", Name: "imagemode-marker", Arch: "all", To: "1.0-1"}
	var summary []string
	for _, c := range got {
		summary = append(summary, c.Layer+": "+c.Summary())
		switch c.Layer {
		case "httpd", "homepage":
			if len(c.Changes) != 1 || c.Changes[0] != added {
				t.Errorf("%s: changes %+v, want only %+v", c.Layer, c.Changes, added)
			}
		default:
			if len(c.Changes) != 0 {
				t.Errorf("%s: changes %+v, want none", c.Layer, c.Changes)
			}
		}
	}
	sort.Strings(summary)
	t.Logf("a package added in httpd: %s", strings.Join(summary, "; "))
}

func indexOf(rep *report.Report, layer string) int {
	for i, l := range rep.Layers {
		if l.Name == layer {
			return i
		}
	}
	return -1
}
