package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/imagemode/imagemode/ci/gha"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/release"
	"github.com/imagemode/imagemode/ci/tags"
)

func runPromote(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("promote", "Promote the candidates of the commit a git tag points to: verify every layer of every profile (candidate,\nrevision label, signature, passing smoke attestation for that digest, chain to its parent, SBOM and SLSA\nprovenance), print what the release changes on the hosts (package differences), then move the\nrelease tags X.Y.Z-<profile>, X.Y-<profile> and <profile> (pre-releases: X.Y.Z-pre-<profile> only).\nNothing moves unless everything verifies; a rerun finishes an interrupted promotion.", stderr)
	tag := fs.String("tag", "", mhelp("promote.tag"))
	commit := fs.String("commit", "", mhelp("promote.commit", "On the host: with git in the checkout holding --dir."))
	reg := fs.String("registry", "", mhelp("new.registry"))
	releaseReg := fs.String("release-registry", "", mhelp("promote.release-registry"))
	var profiles multiFlag
	fs.Var(&profiles, "profile", mhelp("promote.os-profile", "Required on the host."))
	dir := fs.String("dir", "containerfiles", mhelp("new.dir", "On the host: a path."))
	force := fs.Bool("force", false, mhelp("promote.force"))
	expectRun := fs.String("expect-run", "", mhelp("promote.expect-run"))
	rollbackTo := fs.String("rollback-to", "", mhelp("promote.rollback-to"))
	dryRun := fs.Bool("dry-run", false, mhelp("promote.dry-run"))
	jsonOut := fs.Bool("json", false, "print the JSON report")
	reportFile := fs.String("report", "", "also write the JSON report to this file")
	var k keyFlags
	k.registerPublic(fs)
	fs.StringVar(&k.key, "key", "", mhelp("promote.key", "File on the host."))
	fs.StringVar(&k.passFile, "key-password-file", "", mhelp("promote.password", "A file on the host (default: $IMAGEMODE_KEY_PASSWORD)."))
	var rf registryFlags
	rf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkReportFile(*reportFile); err != nil {
		return err
	}
	if *tag == "" || *reg == "" || len(profiles) == 0 {
		return &usageError{msg: "--tag, --registry and --profile are required"}
	}
	// Every argument is checked before the registry is touched.
	ver, err := release.ParseTag(*tag)
	if err != nil {
		return &usageError{msg: "--tag: " + err.Error()}
	}
	if err := release.ValidateProfiles(profiles); err != nil {
		return &usageError{msg: err.Error()}
	}
	if err := release.ValidateTagLengths(ver, profiles); err != nil {
		return &usageError{msg: "--tag " + *tag + ": " + err.Error()}
	}
	if *rollbackTo != "" && (*rollbackTo != ver.String() || ver.Prerelease()) {
		return &usageError{msg: fmt.Sprintf("--rollback-to %s: a rollback names the stable version being promoted (--tag v%s)", *rollbackTo, *rollbackTo)}
	}
	if *commit != "" {
		if err := tags.ValidateCommit(*commit); err != nil {
			return &usageError{msg: err.Error()}
		}
	}
	if err := registry.ValidatePrefix(*reg); err != nil {
		return &usageError{msg: err.Error()}
	}
	if *releaseReg != "" {
		if err := registry.ValidatePrefix(*releaseReg); err != nil {
			return &usageError{msg: "--release-registry: " + err.Error()}
		}
	}
	if k.key == "" && !*dryRun {
		return &usageError{msg: "--key is required: promotion signs a release record for every profile (the floating tags follow only signed releases); --dry-run needs none"}
	}
	g, err := layers.Open(os.DirFS(*dir), ".", *dir)
	if err != nil {
		return err
	}
	ls := release.LayersOf(g)
	if *commit == "" {
		out, err := exec.CommandContext(ctx, "git", "-C", *dir, "rev-parse", *tag+"^{commit}").Output()
		if err != nil {
			return &usageError{msg: fmt.Sprintf("--commit is required: git could not resolve %q (%v)", *tag, err)}
		}
		*commit = strings.TrimSpace(string(out))
	}
	client, err := rf.pushClient(*reg)
	if err != nil {
		return err
	}
	v, err := k.verifier(ctx, client)
	if err != nil {
		return err
	}
	opts := []release.Option{release.WithLog(stderr)}
	if k.key != "" {
		s, err := k.signer(ctx, client)
		if err != nil {
			return err
		}
		opts = append(opts, release.WithSigner(s))
	}
	rep, runErr := release.New(client, v, opts...).Promote(ctx, release.Config{
		Tag: *tag, Commit: *commit, Registry: *reg, ReleaseRegistry: *releaseReg,
		Profiles: profiles, Layers: ls, Force: *force, ExpectRun: *expectRun, RollbackTo: *rollbackTo, DryRun: *dryRun,
	})
	gha.New().Promotion(rep, runErr)
	if rep != nil {
		data, err := rep.JSON()
		if err != nil {
			return err
		}
		if err := output(stdout, *reportFile, *jsonOut, data, rep.Text); err != nil && runErr == nil {
			runErr = err
		}
	}
	return runErr
}
