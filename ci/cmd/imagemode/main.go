// Command imagemode is the imagemode pipeline: plan, lint, build (buildah on a host, or the Dagger engine driving
// --builder engine), sign, smoke-test in QEMU, attest, promote, life-cycle tests. GitHub Actions and the
// integration tests call it on hosts; the Dagger module builds it from the same source and runs its verbs in the
// engine's containers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// verb is one subcommand.
type verb struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func verbs() []verb {
	return []verb{
		{"ci", "the end-to-end job: build-all, sign, smoke-test every layer in a VM, attest the verdicts", runCI},
		{"plan", "show the build levels, parents and references of the layer graph (builds nothing)", runPlan},
		{"lint", "check the layer graph and every Containerfile", runLint},
		{"build-all", "build every layer in dependency order, push each by digest, then write candidate tags", runBuildAll},
		{"build", "build one layer and its ancestors (--layer)", runBuild},
		{"smoke", "boot images in QEMU and probe them; with --key, sign the verdicts as attestations", runSmoke},
		{"sign", "sign images by digest with a cosign key (sha256-<digest>.sig, what bootc verifies)", runSign},
		{"verify", "verify images' signatures by digest and repository", runVerify},
		{"attest", "attach a signed in-toto attestation to images by digest", runAttest},
		{"verify-attestation", "verify images' attestations and print their predicates", runVerifyAttestation},
		{"candidate", "rebuild a finished run's report from its candidate tags in the registry", runCandidate},
		{"disk-image", "make a qcow2 disk of an image (inside the disk builder's container)", runDiskImage},
		{"generate-ssh-key", "make a throwaway SSH key pair for test VMs (disk mode, life cycles)", runGenerateSSHKey},
		{"lifecycle-test", "prove switch, rollback and upgrade of a candidate on a VM booted from a release disk", runLifecycleTest},
		{"promote", "verify a commit's candidates and move the release tags of a git tag vX.Y.Z", runPromote},
		{"diff", "what a bootc upgrade from one image to another changes: packages added, removed, upgraded (from SBOMs)", runDiff},
		{"digest", "print the digest an image reference points at", runDigest},
		{"retag", "point a tag at an image's digest (no blob upload)", runRetag},
		{"generate-key", "make a cosign key pair for signing", runGenerateKey},
	}
}

// usageError is a command-line mistake: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, v := range verbs() {
		if v.name == args[0] {
			err := v.run(ctx, args[1:], stdout, stderr)
			if err == nil {
				return 0
			}
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintf(stderr, "imagemode %s: %v\n", v.name, err)
			var ue *usageError
			if errors.As(err, &ue) {
				return 2
			}
			return 1
		}
	}
	fmt.Fprintf(stderr, "imagemode: unknown command %q\n\n", args[0])
	printUsage(stderr)
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: imagemode <command> [flags]\n\ncommands:")
	vs := verbs()
	sort.Slice(vs, func(i, j int) bool { return vs[i].name < vs[j].name })
	for _, v := range vs {
		fmt.Fprintf(w, "  %-18s %s\n", v.name, v.summary)
	}
	fmt.Fprintln(w, "\nRun 'imagemode <command> -h' for the flags of a command.")
}

// newFlagSet returns a flag set whose errors are returned, not printed and exited on.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("imagemode "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: imagemode %s [flags]\n\n%s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("unexpected argument %q (flags only)", fs.Arg(0))}
	}
	return nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
