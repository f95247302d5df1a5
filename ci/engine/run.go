package engine

import (
	"context"
	"fmt"
	"io"

	"dagger.io/dagger"

	"github.com/imagemode/imagemode/ci/flow"
	"github.com/imagemode/imagemode/ci/pipeline"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/smoke"
)

// Candidate reads the report of commit's run from the registry (pipeline.CandidateReport).
func Candidate(ctx context.Context, dir *dagger.Directory, prefix, profileName, commit string, auth Credential) (*report.Report, error) {
	if err := CheckReachable("--registry", prefix); err != nil {
		return nil, err
	}
	g, err := openGraph(ctx, dir)
	if err != nil {
		return nil, err
	}
	reg, err := registryClient(ctx, auth, Credential{}, prefix, "")
	if err != nil {
		return nil, err
	}
	return pipeline.CandidateReport(ctx, reg, g, prefix, profileName, commit)
}

// AfterBuild signs, smoke-tests (in QEMU service containers) and attests the layers of a finished run, with its
// run record: the `ci` stage chained after build-all.
func AfterBuild(ctx context.Context, client *dagger.Client, rep *report.Report, si SignInput, in SmokeInput, log io.Writer) (*flow.Result, error) {
	data, err := rep.JSON()
	if err != nil {
		return nil, err
	}
	si.Report, si.Images = string(data), nil
	if si.Registry == "" {
		si.Registry = rep.Registry
	}
	reg, err := si.client(ctx)
	if err != nil {
		return nil, err
	}
	s, err := signer(ctx, si, reg)
	if err != nil {
		return nil, err
	}
	in.RegistryAuth = si.RegistryAuth
	if in.RunID == "" {
		in.RunID = rep.RunID
	}
	f := &flow.Flow{Signer: s, Smoker: daggerSmoker{client: client, in: in, log: log}, Log: log}
	return f.AfterBuild(ctx, rep)
}

// Attest attests verdicts (a smoke-test's, held by the module) with the key, and the run record when they cover
// the whole report.
func Attest(ctx context.Context, si SignInput, rep *report.Report, verdicts []smoke.Verdict, log io.Writer) (string, error) {
	if si.Registry == "" && rep != nil {
		si.Registry = rep.Registry
	}
	if si.Registry == "" && len(verdicts) > 0 {
		si.Images = []string{verdicts[0].Image}
	}
	reg, err := si.client(ctx)
	if err != nil {
		return "", err
	}
	s, err := signer(ctx, si, reg)
	if err != nil {
		return "", err
	}
	preds, err := smoke.Attest(ctx, s, verdicts, log)
	if err != nil {
		return "", err
	}
	out := fmt.Sprintf("attested %d verdict(s)\n", len(preds))
	if flow.CoversReport(rep, verdicts) {
		if err := flow.WriteRecord(ctx, s, rep, verdicts, preds); err != nil {
			return out, err
		}
		out += fmt.Sprintf("attested the run record of run %s\n", rep.RunID)
	}
	return out, nil
}
