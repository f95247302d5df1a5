package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/imagemode/imagemode/ci/flow"
	"github.com/imagemode/imagemode/ci/provenance"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/report"
	"github.com/imagemode/imagemode/ci/signing"
	"github.com/imagemode/imagemode/ci/smoke"
)

// keyFlags select the signing key (private, for sign/attest) or the public key (verify).
type keyFlags struct {
	key        string
	passFile   string
	pubKey     string
	tlogUpload bool
	rekorURL   string
	// keyless signing and verification
	keyless    bool
	tokenFile  string
	fulcioURL  string
	identityRE string
	issuer     string
}

func (k *keyFlags) registerPrivate(fs *flag.FlagSet) {
	fs.StringVar(&k.key, "key", "", mhelp("run.sign.key", "A file on the host (or --keyless)."))
	fs.StringVar(&k.passFile, "key-password-file", "", mhelp("run.sign.password", "A file on the host (default: $IMAGEMODE_KEY_PASSWORD, else $COSIGN_PASSWORD)."))
	fs.BoolVar(&k.tlogUpload, "tlog-upload", false, "also upload key-mode signatures to the Rekor transparency log")
	fs.StringVar(&k.rekorURL, "rekor-url", signing.DefaultRekorURL, "Rekor URL (keyless, --tlog-upload)")
	fs.BoolVar(&k.keyless, "keyless", false, "sign with a Fulcio certificate for an OIDC identity instead of a key (a second, provenance signature; needs the public Sigstore services)")
	fs.StringVar(&k.tokenFile, "identity-token-file", "", "OIDC identity token for --keyless (default: $IMAGEMODE_OIDC_TOKEN, else minted from GitHub Actions' ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN)")
	fs.StringVar(&k.fulcioURL, "fulcio-url", signing.DefaultFulcioURL, "Fulcio URL for --keyless")
}

func (k *keyFlags) registerPublic(fs *flag.FlagSet) {
	fs.StringVar(&k.pubKey, "public-key", "", mhelp("new.public-key", "A file on the host (or --certificate-identity-regexp for keyless signatures)."))
	fs.StringVar(&k.identityRE, "certificate-identity-regexp", "", "keyless: regular expression the signing certificate's subject must match (e.g. the workflow URI)")
	fs.StringVar(&k.issuer, "certificate-oidc-issuer", signing.GitHubIssuer, "keyless: the OIDC issuer of the signing certificate")
}

func (k *keyFlags) signer(ctx context.Context, reg *registry.Client) (*signing.KeySigner, error) {
	if k.keyless {
		if k.key != "" {
			return nil, &usageError{msg: "--keyless and --key exclude each other: sign twice for two signatures"}
		}
		token, err := secretFrom(k.tokenFile, "IMAGEMODE_OIDC_TOKEN")
		if err != nil {
			return nil, fmt.Errorf("--identity-token-file: %w", err)
		}
		if token == "" {
			if token, err = signing.GitHubIDToken(ctx, os.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), os.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")); err != nil {
				return nil, fmt.Errorf("--keyless: no identity token (--identity-token-file, $IMAGEMODE_OIDC_TOKEN) and %w", err)
			}
		}
		return signing.NewKeyless(ctx, token, k.fulcioURL, k.rekorURL, reg)
	}
	if k.key == "" {
		return nil, &usageError{msg: "--key is required: the cosign private key (make one with `imagemode generate-key`)"}
	}
	pem, err := os.ReadFile(k.key)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	pass, err := secretFrom(k.passFile, "IMAGEMODE_KEY_PASSWORD")
	if err != nil {
		return nil, fmt.Errorf("--key-password-file: %w", err)
	}
	if pass == "" && k.passFile == "" {
		pass = os.Getenv("COSIGN_PASSWORD")
	}
	var opts []signing.SignerOption
	if k.tlogUpload {
		opts = append(opts, signing.WithTlogUpload(k.rekorURL))
	}
	return signing.NewKeySigner(pem, []byte(pass), reg, opts...)
}

func (k *keyFlags) verifier(ctx context.Context, reg *registry.Client) (signing.Verifier, error) {
	if k.identityRE != "" {
		if k.pubKey != "" {
			return nil, &usageError{msg: "--public-key and --certificate-identity-regexp exclude each other"}
		}
		return signing.NewIdentityVerifier(ctx, signing.Identity{Issuer: k.issuer, SubjectRegexp: k.identityRE}, reg)
	}
	if k.pubKey == "" {
		return nil, &usageError{msg: "--public-key is required (or --certificate-identity-regexp for keyless signatures)"}
	}
	pem, err := os.ReadFile(k.pubKey)
	if err != nil {
		return nil, fmt.Errorf("--public-key: %w", err)
	}
	return signing.NewKeyVerifier(pem, reg)
}

// imageFlags name the images a verb works on: --image (repeatable) and/or every layer of --from-report.
type imageFlags struct {
	images     multiFlag
	fromReport string
	// reportCommit is the commit of --from-report, once refs has read it; report the report itself.
	reportCommit string
	report       *report.Report
}

func (i *imageFlags) register(fs *flag.FlagSet) {
	fs.Var(&i.images, "image", mhelp("images.image"))
	fs.StringVar(&i.fromReport, "from-report", "", "every layer of this build report (JSON from build-all --report)")
}

// refs returns digest references; tags are refused so that what is signed or checked is exactly what was built.
func (i *imageFlags) refs() ([]string, error) {
	var out []string
	if i.fromReport != "" {
		data, err := os.ReadFile(i.fromReport)
		if err != nil {
			return nil, fmt.Errorf("--from-report: %w", err)
		}
		rep, err := report.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("--from-report %q: %w", i.fromReport, err)
		}
		for _, l := range rep.Layers {
			// Every reference is checked before anything is signed: no half-signed report.
			if _, _, err := registry.SplitDigestRef(l.Ref); err != nil {
				return nil, &usageError{msg: fmt.Sprintf("--from-report %q: layer %q has no digest reference (%q)", i.fromReport, l.Name, l.Ref)}
			}
			out = append(out, l.Ref)
		}
		i.reportCommit, i.report = rep.Commit, rep
	}
	for _, img := range i.images {
		if _, _, err := registry.SplitDigestRef(img); err != nil {
			return nil, &usageError{msg: fmt.Sprintf("--image %q: give a digest reference (repository@sha256:...); signatures are made for digests, never tags", img)}
		}
		out = append(out, img)
	}
	if len(out) == 0 {
		return nil, &usageError{msg: "no image: pass --image REPOSITORY@sha256:... or --from-report FILE"}
	}
	return out, nil
}

func runSign(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sign", "Sign images by digest with a cosign key, in the sha256-<digest>.sig format podman, skopeo and bootc verify.\nNo transparency-log upload. With --from-report, also attest the SBOM and SLSA provenance of every layer the run\nbuilt (reused layers keep those of the run that built them).", stderr)
	var k keyFlags
	var im imageFlags
	var rf registryFlags
	k.registerPrivate(fs)
	im.register(fs)
	rf.register(fs)
	builderID := fs.String("builder-id", "", mhelp("run.sign.builder-id", "On the host the default is the GitHub workflow ref on Actions, else $IMAGEMODE_BUILDER_ID, else "+provenance.BuilderCLI+"."))
	refs, reg, err := parseImageVerb(fs, args, &im, &rf)
	if err != nil {
		return err
	}
	s, err := k.signer(ctx, reg)
	if err != nil {
		return err
	}
	for _, ref := range refs {
		if err := s.Sign(ctx, ref); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "signed %s\n", ref)
	}
	if im.report == nil {
		return nil
	}
	ev := &flow.Evidencer{Images: reg, Signer: s, BuilderID: *builderID, ToolVersion: toolVersion(), Log: stderr}
	done, err := ev.Attest(ctx, im.report)
	for _, e := range done {
		fmt.Fprintf(stdout, "attested the SBOM (%d packages) and provenance of %s\n", e.Packages, e.Image)
	}
	return err
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", "Verify that images carry a signature by the key, made for that digest in that repository.", stderr)
	var k keyFlags
	var im imageFlags
	var rf registryFlags
	k.registerPublic(fs)
	im.register(fs)
	rf.register(fs)
	refs, reg, err := parseImageVerb(fs, args, &im, &rf)
	if err != nil {
		return err
	}
	v, err := k.verifier(ctx, reg)
	if err != nil {
		return err
	}
	var failed, unreachable []string
	for _, ref := range refs {
		if err := v.Verify(ctx, ref); err != nil {
			if registry.IsUnreachable(err) {
				fmt.Fprintf(stdout, "UNREACHABLE %s: %v\n", ref, err)
				unreachable = append(unreachable, ref)
				continue
			}
			fmt.Fprintf(stdout, "FAIL %s: %v\n", ref, err)
			failed = append(failed, ref)
			continue
		}
		fmt.Fprintf(stdout, "OK   %s\n", ref)
	}
	switch {
	case len(failed) > 0:
		return fmt.Errorf("%d of %d image(s) not verified: %s", len(failed)+len(unreachable), len(refs), strings.Join(append(failed, unreachable...), ", "))
	case len(unreachable) > 0:
		return fmt.Errorf("the registry is unreachable: %d of %d image(s) could not be checked (run it again when it answers): %s",
			len(unreachable), len(refs), strings.Join(unreachable, ", "))
	}
	return nil
}

func runAttest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("attest", "Attach a signed in-toto attestation to images by digest: a predicate (a JSON file) of a type, or smoke-test\nverdicts (--verdicts, the JSON of smoke --json), each on the image it judged; verdicts that judge every layer of\n--from-report also get the run record promotion requires.", stderr)
	var k keyFlags
	var im imageFlags
	var rf registryFlags
	k.registerPrivate(fs)
	im.register(fs)
	rf.register(fs)
	predicate := fs.String("predicate", "", "JSON file holding the predicate")
	ptype := fs.String("type", signing.PredicateSmoke, "predicate type URI")
	verdictsFile := fs.String("verdicts", "", "JSON file of smoke verdicts to attest (instead of --predicate)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*predicate == "") == (*verdictsFile == "") {
		return &usageError{msg: "give --predicate (with --image or --from-report) or --verdicts"}
	}
	if *verdictsFile != "" {
		return attestVerdicts(ctx, *verdictsFile, &im, &rf, &k, stdout, stderr)
	}
	data, err := os.ReadFile(*predicate)
	if err != nil {
		return fmt.Errorf("--predicate: %w", err)
	}
	refs, err := im.refs()
	if err != nil {
		return err
	}
	reg, err := rf.pushClient(refs[0])
	if err != nil {
		return err
	}
	s, err := k.signer(ctx, reg)
	if err != nil {
		return err
	}
	for _, ref := range refs {
		if err := s.Attest(ctx, ref, *ptype, data); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "attested %s (%s)\n", ref, *ptype)
	}
	return nil
}

// attestVerdicts attests smoke verdicts, and the run record when they judge every layer of --from-report.
func attestVerdicts(ctx context.Context, file string, im *imageFlags, rf *registryFlags, k *keyFlags, stdout, stderr io.Writer) error {
	if len(im.images) > 0 {
		return &usageError{msg: "--verdicts name their images; --image goes with --predicate"}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("--verdicts: %w", err)
	}
	var verdicts []smoke.Verdict
	if err := json.Unmarshal(data, &verdicts); err != nil {
		return fmt.Errorf("--verdicts %q: %w", file, err)
	}
	if len(verdicts) == 0 {
		return &usageError{msg: fmt.Sprintf("--verdicts %q holds no verdict", file)}
	}
	for _, v := range verdicts {
		if _, _, err := registry.SplitDigestRef(v.Image); err != nil {
			return &usageError{msg: fmt.Sprintf("--verdicts %q: a verdict of %q: %v", file, v.Image, err)}
		}
	}
	if im.fromReport != "" {
		if _, err := im.refs(); err != nil {
			return err
		}
	}
	reg, err := rf.pushClient(verdicts[0].Image)
	if err != nil {
		return err
	}
	s, err := k.signer(ctx, reg)
	if err != nil {
		return err
	}
	preds, err := smoke.Attest(ctx, s, verdicts, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "attested %d verdict(s)\n", len(preds))
	if flow.CoversReport(im.report, verdicts) {
		if err := flow.WriteRecord(ctx, s, reg, im.report, verdicts, preds); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "attested the run record of run %s\n", im.report.RunID)
	} else if im.report != nil {
		fmt.Fprintf(stdout, "no run record: the verdicts do not judge every layer of run %s\n", im.report.RunID)
	}
	return nil
}

func runVerifyAttestation(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify-attestation", "Verify images' attestations of a predicate type signed by the key; prints the predicates.", stderr)
	var k keyFlags
	var im imageFlags
	var rf registryFlags
	k.registerPublic(fs)
	im.register(fs)
	rf.register(fs)
	ptype := fs.String("type", signing.PredicateSmoke, "predicate type URI")
	refs, reg, err := parseImageVerb(fs, args, &im, &rf)
	if err != nil {
		return err
	}
	v, err := k.verifier(ctx, reg)
	if err != nil {
		return err
	}
	for _, ref := range refs {
		sts, err := v.Attestations(ctx, ref, *ptype)
		if err != nil {
			return err
		}
		for _, st := range sts {
			fmt.Fprintf(stdout, "%s %s\n", ref, st.Predicate)
		}
	}
	return nil
}

func runGenerateKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("generate-key", "Make a cosign key pair: PREFIX.key (encrypted with the password) and PREFIX.pub.", stderr)
	prefix := fs.String("output-prefix", "imagemode", "file name prefix")
	passFile := fs.String("key-password-file", "", "file holding the password (default: $IMAGEMODE_KEY_PASSWORD)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pass, err := secretFrom(*passFile, "IMAGEMODE_KEY_PASSWORD")
	if err != nil {
		return err
	}
	if pass == "" {
		return &usageError{msg: "a password is required: --key-password-file or $IMAGEMODE_KEY_PASSWORD"}
	}
	for _, p := range []string{*prefix + ".key", *prefix + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			return &usageError{msg: fmt.Sprintf("%s exists: not overwriting a key", p)}
		}
	}
	priv, pub, err := signing.GenerateKeyPair([]byte(pass))
	if err != nil {
		return err
	}
	return writeKeyPair(*prefix, priv, pub, stdout)
}

// writeKeyPair writes PREFIX.key and PREFIX.pub whole or not at all: both go to temporary files beside their
// destinations first; a failure removes whatever was written.
func writeKeyPair(prefix string, priv, pub []byte, stdout io.Writer) (err error) {
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{{prefix + ".key", priv, 0o600}, {prefix + ".pub", pub, 0o644}}
	var written []string
	defer func() {
		if err != nil {
			for _, p := range written {
				if rerr := os.Remove(p); rerr != nil && !os.IsNotExist(rerr) {
					err = errors.Join(err, rerr)
				}
			}
		}
	}()
	var tmps []string
	for _, f := range files {
		tmp, err := writeTemp(f.path, f.data, f.mode)
		if err != nil {
			for _, t := range tmps {
				os.Remove(t)
			}
			return err
		}
		tmps = append(tmps, tmp)
	}
	for i, f := range files {
		// Link, not rename: a file that appeared meanwhile is never replaced.
		if err := os.Link(tmps[i], f.path); err != nil {
			for _, t := range tmps {
				os.Remove(t)
			}
			return fmt.Errorf("writing %s: %w", f.path, err)
		}
		written = append(written, f.path)
	}
	for _, t := range tmps {
		if err := os.Remove(t); err != nil {
			return fmt.Errorf("removing %s: %w", t, err)
		}
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "wrote %s\n", f.path)
	}
	return nil
}

// writeTemp writes data to a new temporary file in dst's folder and returns its path.
func writeTemp(dst string, data []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(f.Name(), mode)); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	return f.Name(), nil
}

// parseImageVerb parses the flags of a verb that works on images and returns their digest references and a
// registry client for them.
func parseImageVerb(fs *flag.FlagSet, args []string, im *imageFlags, rf *registryFlags) ([]string, *registry.Client, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	refs, err := im.refs()
	if err != nil {
		return nil, nil, err
	}
	reg, err := rf.pushClient(refs[0])
	if err != nil {
		return nil, nil, err
	}
	return refs, reg, nil
}

// pushClient is a registry client with the --registry-username credentials for the host of ref.
func (r *registryFlags) pushClient(ref string) (*registry.Client, error) {
	creds, err := r.credentials(ref, "")
	if err != nil {
		return nil, err
	}
	return r.client(creds...)
}
