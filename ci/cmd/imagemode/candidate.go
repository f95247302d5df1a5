package main

import (
	"context"
	"io"
	"os"

	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/pipeline"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/tags"
)

func runCandidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("candidate", "Rebuild the report of a finished run from the registry alone: every layer of the graph at its candidate tag\nsha-<commit>-<profile>, checked to chain parent to child. The stages after the build (smoke, sign, attest,\npromote) can start from it instead of a report file.", stderr)
	dir := fs.String("dir", "containerfiles", mhelp("new.dir", "On the host: a path."))
	reg := fs.String("registry", "", mhelp("new.registry"))
	profile := fs.String("profile", mdefault("new.os-profile"), mhelp("new.os-profile"))
	commit := fs.String("commit", "", mhelp("candidate.commit"))
	reportFile := fs.String("report", "", "also write the JSON report to this file")
	jsonOut := fs.Bool("json", false, "print the JSON report instead of the table")
	var rf registryFlags
	rf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkReportFile(*reportFile); err != nil {
		return err
	}
	if *reg == "" || *commit == "" {
		return &usageError{msg: "--registry and --commit are required"}
	}
	if err := registry.ValidatePrefix(*reg); err != nil {
		return &usageError{msg: err.Error()}
	}
	if err := tags.ValidateCommit(*commit); err != nil {
		return &usageError{msg: "--commit: " + err.Error()}
	}
	g, err := layers.Open(os.DirFS(*dir), ".", *dir)
	if err != nil {
		return err
	}
	client, err := rf.pushClient(*reg)
	if err != nil {
		return err
	}
	rep, err := pipeline.CandidateReport(ctx, client, g, *reg, *profile, *commit)
	if err != nil {
		return err
	}
	return emitReport(rep, *reportFile, *jsonOut, stdout)
}
