package gha

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sethvargo/go-githubactions"

	"github.com/imagemode/imagemode/ci/flow"
	"github.com/imagemode/imagemode/ci/release"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/sbom"
	"github.com/imagemode/imagemode/ci/smoke"
)

type runner struct {
	out, summary string
	stdout       bytes.Buffer
}

func newRunner(t *testing.T, inActions bool) (*Reporter, *runner) {
	t.Helper()
	dir := t.TempDir()
	r := &runner{out: filepath.Join(dir, "output"), summary: filepath.Join(dir, "summary")}
	for _, f := range []string{r.out, r.summary} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"GITHUB_OUTPUT": r.out, "GITHUB_STEP_SUMMARY": r.summary}
	if inActions {
		env["GITHUB_ACTIONS"] = "true"
	}
	rep := New(githubactions.WithGetenv(func(k string) string { return env[k] }), githubactions.WithWriter(&r.stdout))
	return rep, r
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sampleBuild() *report.Report {
	return &report.Report{Commit: "0123456789abcdef0123", Profile: "centos-stream-9", BaseImage: "quay.io/centos-bootc/centos-bootc:stream9",
		BaseDigest: "sha256:" + strings.Repeat("b", 64), Candidates: true,
		Layers: []report.Layer{
			{Name: "soe", Status: "built", Ref: "ghcr.io/a/im/soe@sha256:" + strings.Repeat("1", 64), Digest: "sha256:" + strings.Repeat("1", 64), CandidateTag: "sha-0123456789ab-centos-stream-9"},
			{Name: "httpd", Status: "reused", Ref: "ghcr.io/a/im/httpd@sha256:" + strings.Repeat("2", 64), Digest: "sha256:" + strings.Repeat("2", 64), ParentDigest: "sha256:" + strings.Repeat("1", 64)},
		}}
}

func TestCIOutputsSummaryAndAnnotations(t *testing.T) {
	rep, r := newRunner(t, true)
	res := &flow.Result{Build: sampleBuild(), Verdict: smoke.Fail, Reason: "smoke test failed: httpd (GET /: connection refused)",
		Verdicts: []smoke.Verdict{
			{Layer: "soe", Verdict: smoke.Pass, Image: "ghcr.io/a/im/soe@sha256:1", Mode: "ephemeral", Accel: "kvm", Probes: []smoke.ProbeResult{{Name: "multi-user", OK: true, SinceBootMS: 8100}}},
			{Layer: "httpd", Verdict: smoke.Fail, Image: "ghcr.io/a/im/httpd@sha256:2", Mode: "ephemeral", Accel: "kvm", Reason: "GET /: connection refused", Probes: []smoke.ProbeResult{{Name: "http /", OK: false}}},
		}}
	rep.CI(res, errors.New("ci failed"))
	out := read(t, r.out)
	for _, want := range []string{
		"digests<<", `{"httpd":"ghcr.io/a/im/httpd@sha256:` + strings.Repeat("2", 64) + `","soe":"ghcr.io/a/im/soe@sha256:` + strings.Repeat("1", 64) + `"}`,
		"candidate-tag<<", "sha-0123456789ab-centos-stream-9", "commit<<", "0123456789abcdef0123", "verdict<<", "fail",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("GITHUB_OUTPUT lacks %q:\n%s", want, out)
		}
	}
	sum := read(t, r.summary)
	for _, want := range []string{
		"### imagemode build — centos-stream-9", "| soe | built | `sha256:111111111111` |", "| httpd | reused |",
		"### imagemode smoke tests", "| httpd | FAIL | ephemeral | kvm | ❌ http / 0.0s |", "✅ multi-user 8.1s",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	ann := r.stdout.String()
	if !strings.Contains(ann, "::error title=smoke test failed%3A httpd::ghcr.io/a/im/httpd@sha256:2: GET /: connection refused") {
		t.Errorf("annotations:\n%s", ann)
	}
	if !strings.Contains(ann, "::error::imagemode ci: smoke test failed: httpd") {
		t.Errorf("ci annotation missing:\n%s", ann)
	}
}

func TestPromotionReport(t *testing.T) {
	rep, r := newRunner(t, true)
	rep.Promotion(&release.Report{Tag: "v1.2.3", Complete: true, Moves: []release.Move{
		{Repository: "ghcr.io/a/im/soe", Tag: "1.2.3-centos-stream-9", Digest: "sha256:" + strings.Repeat("1", 64), Status: release.Moved},
		{Repository: "ghcr.io/a/im/soe", Tag: "centos-stream-9", Digest: "sha256:" + strings.Repeat("1", 64), Status: release.Kept, Note: "newer release 1.3.0 exists"},
	}}, nil)
	out := read(t, r.out)
	if !strings.Contains(out, "moved<<") || !strings.Contains(out, "\n1\n") || !strings.Contains(out, "complete<<") || !strings.Contains(out, "\ntrue\n") {
		t.Errorf("outputs:\n%s", out)
	}
	if sum := read(t, r.summary); !strings.Contains(sum, "| `ghcr.io/a/im/soe:centos-stream-9` | `sha256:111111111111` | kept newer release 1.3.0 exists |") {
		t.Errorf("summary:\n%s", sum)
	}
	rep.Promotion(&release.Report{Tag: "v1.3.0", DryRun: true, Changes: []release.LayerChanges{
		{Profile: "centos-stream-9", Layer: "httpd", Follows: "ghcr.io/a/im/httpd:centos-stream-9", Changes: []sbom.Change{
			{Kind: sbom.Upgraded, Type: "rpm", Name: "httpd", From: "2.4.57-5.el9", To: "2.4.57-8.el9"}}},
		{Profile: "centos-stream-9", Layer: "soe", Follows: "ghcr.io/a/im/soe:centos-stream-9", Changes: []sbom.Change{}},
	}}, nil)
	sum := read(t, r.summary)
	for _, want := range []string{"Dry run: everything verifies; nothing was moved.", "### What v1.3.0 changes on the hosts",
		"| httpd | centos-stream-9 | `ghcr.io/a/im/httpd:centos-stream-9` | 1 upgraded |", "| soe | centos-stream-9 | `ghcr.io/a/im/soe:centos-stream-9` | no package changes |",
		"| upgraded | httpd | 2.4.57-5.el9 | 2.4.57-8.el9 |"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	rep.Promotion(nil, errors.New("refusing to promote soe"))
	if !strings.Contains(r.stdout.String(), "::error title=promotion refused::refusing to promote soe") {
		t.Errorf("annotation:\n%s", r.stdout.String())
	}
}

func TestOutsideActionsNothingIsWritten(t *testing.T) {
	rep, r := newRunner(t, false)
	if rep.Enabled() {
		t.Fatal("enabled outside Actions")
	}
	rep.Build(sampleBuild(), errors.New("x"))
	rep.Promotion(&release.Report{Tag: "v1.0.0"}, errors.New("x"))
	if read(t, r.out) != "" || read(t, r.summary) != "" || r.stdout.Len() != 0 {
		t.Error("something was written outside GitHub Actions")
	}
}
