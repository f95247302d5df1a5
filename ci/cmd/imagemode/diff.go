package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/imagemode/imagemode/ci/gha"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/release"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/sbom"
	"github.com/imagemode/imagemode/ci/tags"
)

// diffResult is what `imagemode diff --from --to` prints as JSON.
type diffResult struct {
	From    string        `json:"from"`
	To      string        `json:"to"`
	Source  string        `json:"source"`
	Changes []sbom.Change `json:"changes"`
}

func runDiff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("diff", "What a `bootc upgrade` from one image to another changes on a host: the packages added, removed, upgraded\nand downgraded, from the images' SBOMs signed by the key (--public-key), else from SBOMs made from the images.\nEither two images (--from, --to), or every layer of a build report (--from-report) against the release its\nfloating tag <registry>/<layer>:<profile> names now (what promoting the run would change; written to the GitHub\njob summary on Actions).", stderr)
	from := fs.String("from", "", mhelp("diff.from"))
	to := fs.String("to", "", mhelp("diff.to"))
	fromReport := fs.String("from-report", "", "compare every layer of this build report (JSON from build-all --report or ci) with its current release")
	releaseReg := fs.String("release-registry", "", mhelp("run.changes.release-registry", "(With --from-report.)"))
	jsonOut := fs.Bool("json", false, "print JSON")
	reportFile := fs.String("report", "", "also write the JSON to this file")
	var k keyFlags
	k.registerPublic(fs)
	var rf registryFlags
	rf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkReportFile(*reportFile); err != nil {
		return err
	}
	var rep *report.Report
	switch {
	case *fromReport != "" && (*from != "" || *to != ""):
		return &usageError{msg: "--from-report excludes --from and --to"}
	case *fromReport != "":
		data, err := os.ReadFile(*fromReport)
		if err != nil {
			return &usageError{msg: fmt.Sprintf("--from-report: %v", err)}
		}
		if rep, err = report.Parse(data); err != nil {
			return &usageError{msg: fmt.Sprintf("--from-report %q: %v", *fromReport, err)}
		}
		if len(rep.Layers) == 0 {
			return &usageError{msg: fmt.Sprintf("--from-report %q: no layers", *fromReport)}
		}
	case *from == "" || *to == "":
		return &usageError{msg: "--from and --to (two images by digest or tag), or --from-report, are required"}
	case *releaseReg != "":
		return &usageError{msg: "--release-registry goes with --from-report"}
	}
	if *releaseReg != "" {
		if err := registry.ValidatePrefix(*releaseReg); err != nil {
			return &usageError{msg: "--release-registry: " + err.Error()}
		}
	}
	for _, r := range [][2]string{{"--from", *from}, {"--to", *to}} {
		if r[1] == "" {
			continue
		}
		if _, err := registry.ParseRef(r[1]); err != nil {
			return &usageError{msg: fmt.Sprintf("%s %q: %v", r[0], r[1], err)}
		}
	}
	first := *from
	if rep != nil {
		first = rep.Layers[0].Ref
	}
	reg, err := rf.pushClient(first)
	if err != nil {
		return err
	}
	d := &release.Differ{Reg: reg, ToolVersion: toolVersion()}
	if k.pubKey != "" || k.identityRE != "" {
		if d.Verifier, err = k.verifier(ctx, reg); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(stderr, "imagemode diff: no --public-key: comparing SBOMs made from the images now (nothing verifies who built them)")
	}
	if rep != nil {
		cs, err := d.Run(ctx, rep, *releaseReg)
		if err != nil {
			return err
		}
		commit := rep.Commit
		if len(commit) > tags.CommitLen {
			commit = commit[:tags.CommitLen]
		}
		gha.New().Changes(fmt.Sprintf("What promoting %s (%s) would change on the hosts", commit, rep.Profile), cs)
		data, err := json.MarshalIndent(cs, "", "  ")
		if err != nil {
			return err
		}
		return output(stdout, *reportFile, *jsonOut, data, func() string { return release.ChangesText(cs) })
	}
	old, src, err := d.Packages(ctx, *from)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	cur, _, err := d.Packages(ctx, *to)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	res := diffResult{From: *from, To: *to, Source: src, Changes: sbom.Diff(old, cur)}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return output(stdout, *reportFile, *jsonOut, data, func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "%s → %s (%s): %s\n", res.From, res.To, res.Source, sbom.Summary(res.Changes))
		for _, c := range res.Changes {
			fmt.Fprintf(&b, "    %s\n", c)
		}
		return b.String()
	})
}
