// Command sigpolicy is an independent check of imagemode's host trust policy: it asks containers/image — the policy
// engine bootc, podman and skopeo use — whether an image may run under a policy.json and registries.d as the SOE
// image installs them. It is its own Go module so that containers/image stays out of what the Dagger module builds.
//
//	sigpolicy --root DIR --image REGISTRY/REPO@sha256:...
//	sigpolicy --root DIR --transport containers-storage --image NAME    (a local transport: which requirement applies)
//
// DIR holds etc/containers/policy.json, etc/containers/registries.d/ and the keys the policy names (keyPath values
// are read below DIR). Exit status: 0 allowed, 1 refused (the reason on stderr), 2 usage or setup error.
//
// Build: CGO_ENABLED=0 go build -tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containers/image/v5/docker"
	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/image"
	"github.com/containers/image/v5/signature"
	"github.com/containers/image/v5/types"
)

func main() {
	os.Exit(run())
}

func run() int {
	root := flag.String("root", "", "directory holding etc/containers/policy.json and registries.d (required)")
	img := flag.String("image", "", "image reference to check (required)")
	transport := flag.String("transport", "docker", "docker (the image is read from its registry), or a local transport "+
		"(containers-storage, oci, dir, ...): the policy's requirement for it is applied to an image with no signatures")
	flag.Parse()
	if *root == "" || *img == "" {
		fmt.Fprintln(os.Stderr, "usage: sigpolicy --root DIR --image REF")
		return 2
	}
	ctx := context.Background()
	pol, err := loadPolicy(*root)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sigpolicy: %v\n", err)
		return 2
	}
	pc, err := signature.NewPolicyContext(pol)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sigpolicy: policy context: %v\n", err)
		return 2
	}
	defer func() {
		if err := pc.Destroy(); err != nil {
			fmt.Fprintf(os.Stderr, "sigpolicy: %v\n", err)
		}
	}()
	empty := filepath.Join(*root, "registries.conf")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "sigpolicy: %v\n", err)
		return 2
	}
	sys := &types.SystemContext{
		RegistriesDirPath:           filepath.Join(*root, "etc", "containers", "registries.d"),
		SystemRegistriesConfPath:    empty,
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
	}
	if *transport != "docker" {
		local := localRef{t: localTransport(*transport), name: *img}
		allowed, err := pc.IsRunningImageAllowed(ctx, unsignedImage{local})
		if err != nil || !allowed {
			fmt.Fprintf(os.Stderr, "REFUSED %s:%s: %v\n", *transport, *img, err)
			return 1
		}
		fmt.Printf("ALLOWED %s:%s\n", *transport, *img)
		return 0
	}
	ref, err := docker.ParseReference("//" + *img)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sigpolicy: %v\n", err)
		return 2
	}
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sigpolicy: %v\n", err)
		return 2
	}
	defer src.Close()
	allowed, err := pc.IsRunningImageAllowed(ctx, image.UnparsedInstance(src, nil))
	if err != nil || !allowed {
		fmt.Fprintf(os.Stderr, "REFUSED %s: %v\n", *img, err)
		return 1
	}
	fmt.Printf("ALLOWED %s\n", *img)
	return 0
}

// loadPolicy reads DIR/etc/containers/policy.json and resolves every absolute keyPath below DIR.
func loadPolicy(root string) (*signature.Policy, error) {
	data, err := os.ReadFile(filepath.Join(root, "etc", "containers", "policy.json"))
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("policy.json: %w", err)
	}
	rewrite(doc, root)
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return signature.NewPolicyFromBytes(out)
}

func rewrite(v any, root string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "keyPath") && strings.HasPrefix(s, "/") {
				v[k] = filepath.Join(root, s)
				continue
			}
			rewrite(x, root)
		}
	case []any:
		for _, x := range v {
			rewrite(x, root)
		}
	}
}

// localTransport, localRef and unsignedImage stand for an image of a local transport (containers-storage, oci, ...):
// the policy engine picks the requirement by the transport's name and the reference's identity, and an image that
// carries no signature then meets only requirements that need none.
type localTransport string

func (t localTransport) Name() string { return string(t) }
func (t localTransport) ParseReference(string) (types.ImageReference, error) {
	return nil, fmt.Errorf("not parsing %s references", string(t))
}
func (localTransport) ValidatePolicyConfigurationScope(string) error { return nil }

type localRef struct {
	t    localTransport
	name string
}

func (r localRef) Transport() types.ImageTransport       { return r.t }
func (r localRef) StringWithinTransport() string         { return r.name }
func (localRef) DockerReference() reference.Named        { return nil }
func (r localRef) PolicyConfigurationIdentity() string   { return r.name }
func (localRef) PolicyConfigurationNamespaces() []string { return nil }
func (localRef) NewImage(context.Context, *types.SystemContext) (types.ImageCloser, error) {
	return nil, errors.New("local stand-in")
}
func (localRef) NewImageSource(context.Context, *types.SystemContext) (types.ImageSource, error) {
	return nil, errors.New("local stand-in")
}
func (localRef) NewImageDestination(context.Context, *types.SystemContext) (types.ImageDestination, error) {
	return nil, errors.New("local stand-in")
}
func (localRef) DeleteImage(context.Context, *types.SystemContext) error {
	return errors.New("local stand-in")
}

type unsignedImage struct{ ref localRef }

func (u unsignedImage) Reference() types.ImageReference { return u.ref }
func (unsignedImage) Manifest(context.Context) ([]byte, string, error) {
	return nil, "", errors.New("the local stand-in has no manifest")
}
func (unsignedImage) Signatures(context.Context) ([][]byte, error) { return nil, nil }
