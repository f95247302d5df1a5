// Package gha reports imagemode results to GitHub Actions (github.com/sethvargo/go-githubactions): step outputs
// other steps read (digests, verdict, moved tags), a Markdown step summary, and error annotations. Outside Actions
// (GITHUB_ACTIONS is not "true") every call does nothing.
package gha

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sethvargo/go-githubactions"

	"github.com/imagemode/imagemode/ci/flow"
	"github.com/imagemode/imagemode/ci/lifecycle"
	"github.com/imagemode/imagemode/ci/release"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/smoke"
)

// Reporter writes to the Actions runner.
type Reporter struct {
	a       *githubactions.Action
	enabled bool
}

// New returns a Reporter; options are go-githubactions' (tests pass WithGetenv).
func New(opts ...githubactions.Option) *Reporter {
	a := githubactions.New(opts...)
	return &Reporter{a: a, enabled: a.Getenv("GITHUB_ACTIONS") == "true"}
}

// Enabled reports whether the process runs in GitHub Actions.
func (r *Reporter) Enabled() bool { return r.enabled }

func short(d string) string {
	if i := strings.Index(d, ":"); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

// Build reports a build: outputs digests (JSON {layer: ref}), candidate-tag and commit; a summary table.
func (r *Reporter) Build(rep *report.Report, err error) {
	if !r.enabled || rep == nil {
		return
	}
	refs := map[string]string{}
	for _, l := range rep.Layers {
		refs[l.Name] = l.Ref
	}
	data, jerr := json.Marshal(refs)
	if jerr == nil {
		r.a.SetOutput("digests", string(data))
	}
	if len(rep.Layers) > 0 {
		r.a.SetOutput("candidate-tag", rep.Layers[0].CandidateTag)
	}
	r.a.SetOutput("commit", rep.Commit)
	var b strings.Builder
	fmt.Fprintf(&b, "### imagemode build — %s\n\n", rep.Profile)
	fmt.Fprintf(&b, "Base `%s` @ `%s`, commit `%s`\n\n", rep.BaseImage, short(rep.BaseDigest), short(rep.Commit))
	b.WriteString("| layer | status | digest | parent digest |\n| --- | --- | --- | --- |\n")
	for _, l := range rep.Layers {
		fmt.Fprintf(&b, "| %s | %s | `%s` | `%s` |\n", l.Name, l.Status, short(l.Digest), short(l.ParentDigest))
	}
	if !rep.Candidates {
		b.WriteString("\n**No candidate tag was written: the run did not complete.**\n")
	}
	r.a.AddStepSummary(b.String())
	if err != nil {
		r.a.Errorf("imagemode build (%s) failed: %v", rep.Profile, err)
	}
}

// CI reports the end-to-end job: the build, then the verdicts; outputs verdict.
func (r *Reporter) CI(res *flow.Result, err error) {
	if !r.enabled || res == nil {
		return
	}
	r.Build(res.Build, nil)
	r.a.SetOutput("verdict", res.Verdict)
	r.Verdicts(res.Verdicts)
	if err != nil {
		r.a.Errorf("imagemode ci: %s", res.Reason)
	}
}

// Verdicts reports smoke-test verdicts: a summary table and an error annotation per failure.
func (r *Reporter) Verdicts(vs []smoke.Verdict) {
	if !r.enabled || len(vs) == 0 {
		return
	}
	var b strings.Builder
	b.WriteString("### imagemode smoke tests\n\n| layer | verdict | mode | accel | probes |\n| --- | --- | --- | --- | --- |\n")
	for _, v := range vs {
		var ps []string
		for _, p := range v.Probes {
			mark := "✅"
			if !p.OK {
				mark = "❌"
			}
			ps = append(ps, fmt.Sprintf("%s %s %.1fs", mark, p.Name, float64(p.SinceBootMS)/1000))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", v.Layer, strings.ToUpper(v.Verdict), v.Mode, v.Accel, strings.Join(ps, "<br>"))
	}
	r.a.AddStepSummary(b.String())
	for _, v := range vs {
		if v.Verdict != smoke.Pass {
			r.a.WithFieldsMap(map[string]string{"title": "smoke test failed: " + v.Layer}).Errorf("%s: %s", v.Image, v.Reason)
		}
	}
}

// Promotion reports a promotion: outputs moved (count) and complete; a summary of every tag.
func (r *Reporter) Promotion(rep *release.Report, err error) {
	if !r.enabled {
		return
	}
	if rep != nil {
		moved := 0
		var b strings.Builder
		fmt.Fprintf(&b, "### imagemode promotion %s\n\n| tag | digest | status |\n| --- | --- | --- |\n", rep.Tag)
		for _, m := range rep.Moves {
			if m.Status == release.Moved {
				moved++
			}
			fmt.Fprintf(&b, "| `%s:%s` | `%s` | %s %s |\n", m.Repository, m.Tag, short(m.Digest), m.Status, m.Note)
		}
		r.a.SetOutput("moved", fmt.Sprint(moved))
		r.a.SetOutput("complete", fmt.Sprint(rep.Complete))
		if rep.DryRun {
			b.WriteString("\nDry run: everything verifies; nothing was moved.\n")
		}
		r.a.AddStepSummary(b.String())
		if len(rep.Changes) > 0 {
			r.a.AddStepSummary(release.ChangesMarkdown("What "+rep.Tag+" changes on the hosts", rep.Changes))
		}
	}
	if err != nil {
		r.a.WithFieldsMap(map[string]string{"title": "promotion refused"}).Errorf("%v", err)
	}
}

// Lifecycle reports a life-cycle test: outputs verdict; a summary of the steps.
func (r *Reporter) Lifecycle(rep *lifecycle.Report) {
	if !r.enabled || rep == nil {
		return
	}
	r.a.SetOutput("lifecycle-verdict", rep.Verdict)
	var b strings.Builder
	b.WriteString("### imagemode life cycle\n\n| step | ok | booted | seconds |\n| --- | --- | --- | --- |\n")
	for _, s := range rep.Steps {
		fmt.Fprintf(&b, "| %s | %v | `%s` | %.1f |\n", s.Name, s.OK, short(s.Booted), float64(s.DurationMS)/1000)
	}
	r.a.AddStepSummary(b.String())
	if rep.Verdict != smoke.Pass {
		r.a.WithFieldsMap(map[string]string{"title": "life-cycle test failed"}).Errorf("%s", rep.Reason)
	}
}

// Changes reports package changes (imagemode diff): a summary table, per layer the packages.
func (r *Reporter) Changes(title string, cs []release.LayerChanges) {
	if !r.enabled || len(cs) == 0 {
		return
	}
	r.a.AddStepSummary(release.ChangesMarkdown(title, cs))
}
