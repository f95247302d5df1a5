// Package registry is the pipeline's one way of talking to container registries (go-containerregistry): resolving
// digests, tagging by digest, listing tags, reading labels and copying images. Every call goes through one transport
// with explicit retry settings, which the signing code shares (RemoteOptions).
package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Retry says how often and on what a failed registry request is retried.
type Retry struct {
	// Steps is the number of attempts (1 = no retry).
	Steps int
	// Initial is the wait after the first failure; each later wait is Factor times the previous one.
	Initial time.Duration
	Factor  float64
	// Statuses are the HTTP statuses that are retried (connection resets and timeouts always are).
	Statuses []int
}

// DefaultRetry retries five times over about 15 s on timeouts, rate limits and 5xx answers.
var DefaultRetry = Retry{
	Steps:   5,
	Initial: 500 * time.Millisecond,
	Factor:  2.5,
	Statuses: []int{
		http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
	},
}

type options struct {
	retry     Retry
	transport http.RoundTripper
	creds     map[string]authn.AuthConfig
	keychain  authn.Keychain
	userAgent string
}

// Option configures a Client.
type Option func(*options)

// WithRetry replaces DefaultRetry.
func WithRetry(r Retry) Option { return func(o *options) { o.retry = r } }

// WithTransport sets the HTTP transport under the retry layer (tests put a fault-injecting proxy here).
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithCredentials gives a username and password (or token) for one registry host. They take precedence over the
// keychain for that host.
func WithCredentials(host, username, password string) Option {
	return func(o *options) {
		if o.creds == nil {
			o.creds = map[string]authn.AuthConfig{}
		}
		o.creds[host] = authn.AuthConfig{Username: username, Password: password}
	}
}

// WithKeychain replaces the default keychain (the Docker/Podman config files of the user).
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }

// WithUserAgent sets the User-Agent of every request.
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

// Client talks to registries.
type Client struct {
	o        options
	once     sync.Once
	keychain authn.Keychain
}

// New returns a Client.
func New(opts ...Option) *Client {
	o := options{retry: DefaultRetry, transport: remote.DefaultTransport, keychain: authn.DefaultKeychain, userAgent: "imagemode"}
	for _, opt := range opts {
		opt(&o)
	}
	return &Client{o: o}
}

// Hosts returns the registry hosts that have explicit credentials.
func (c *Client) Hosts() []string {
	var out []string
	for h := range c.o.creds {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

type credKeychain struct {
	creds map[string]authn.AuthConfig
	next  authn.Keychain
}

func (k credKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if cfg, ok := k.creds[r.RegistryStr()]; ok {
		return authn.FromConfig(cfg), nil
	}
	return k.next.Resolve(r)
}

// RemoteOptions are the go-containerregistry options every call uses: context, auth, transport and retries.
// cosign's ociremote.WithRemoteOptions takes the same list.
func (c *Client) RemoteOptions(ctx context.Context) []remote.Option {
	c.once.Do(func() { c.keychain = credKeychain{creds: c.o.creds, next: c.o.keychain} })
	r := c.o.retry
	if r.Steps < 1 {
		r.Steps = 1
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithTransport(c.o.transport),
		remote.WithUserAgent(c.o.userAgent),
		remote.WithRetryBackoff(remote.Backoff{Duration: r.Initial, Factor: r.Factor, Jitter: 0.1, Steps: r.Steps}),
		remote.WithRetryStatusCodes(r.Statuses...),
	}
}

// ParseRef parses an image reference the way the pipeline does everywhere (fully qualified, no defaults applied
// silently: "ubuntu" is refused). Registries on localhost and 127.0.0.1 are reached over plain HTTP.
func ParseRef(ref string) (name.Reference, error) {
	host, _, ok := strings.Cut(ref, "/")
	if !ok || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return nil, fmt.Errorf("parsing image reference %q: use a fully qualified reference such as quay.io/org/image:tag", ref)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference %q: %w", ref, err)
	}
	return r, nil
}

// ParseRepo parses a repository name such as ghcr.io/org/imagemode/soe.
func ParseRepo(repo string) (name.Repository, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		return name.Repository{}, fmt.Errorf("parsing repository %q: %w", repo, err)
	}
	return r, nil
}

// Digest resolves ref (tag or digest) to the digest of what it points at, without downloading the image.
func (c *Client) Digest(ctx context.Context, ref string) (string, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(r, c.RemoteOptions(ctx)...)
	if err != nil {
		// Some registries refuse HEAD on manifests; GET answers the same question.
		d, gerr := remote.Get(r, c.RemoteOptions(ctx)...)
		if gerr != nil {
			return "", fmt.Errorf("resolving %q: %w", ref, gerr)
		}
		return d.Digest.String(), nil
	}
	return desc.Digest.String(), nil
}

// Exists reports whether ref exists in its registry; any error other than "not found" is returned.
func (c *Client) Exists(ctx context.Context, ref string) (bool, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return false, err
	}
	_, err = remote.Head(r, c.RemoteOptions(ctx)...)
	if err == nil {
		return true, nil
	}
	if IsNotFound(err) {
		return false, nil
	}
	return false, fmt.Errorf("looking up %q: %w", ref, err)
}

// IsNotFound reports whether err is a registry's "manifest unknown" / 404 answer.
func IsNotFound(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		if terr.StatusCode == http.StatusNotFound {
			return true
		}
		for _, d := range terr.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
				return true
			}
		}
	}
	return false
}

// Tag points repo:tag at the manifest digestRef (repo@sha256:...) refers to. Only the manifest is written: tagging
// inside one repository uploads no blob.
func (c *Client) Tag(ctx context.Context, digestRef, tag string) error {
	d, err := name.NewDigest(digestRef)
	if err != nil {
		return fmt.Errorf("parsing digest reference %q: %w", digestRef, err)
	}
	t, err := name.NewTag(d.Context().Name()+":"+tag, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("tag %q: %w", tag, err)
	}
	desc, err := remote.Get(d, c.RemoteOptions(ctx)...)
	if err != nil {
		return fmt.Errorf("reading %q: %w", digestRef, err)
	}
	if err := remote.Tag(t, desc, c.RemoteOptions(ctx)...); err != nil {
		return fmt.Errorf("tagging %q as %q: %w", digestRef, t.String(), err)
	}
	return nil
}

// Tags lists the tags of a repository, sorted; a repository that does not exist has none.
func (c *Client) Tags(ctx context.Context, repo string) ([]string, error) {
	r, err := ParseRepo(repo)
	if err != nil {
		return nil, err
	}
	tags, err := remote.List(r, c.RemoteOptions(ctx)...)
	if err != nil {
		if IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing tags of %q: %w", repo, err)
	}
	sort.Strings(tags)
	return tags, nil
}

// Image opens the image ref (for an index, its linux/amd64 image); its layers are read lazily.
func (c *Client) Image(ctx context.Context, ref string) (v1.Image, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, c.RemoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", ref, err)
	}
	return img, nil
}

// Config reads the image configuration of ref (for an index, of its linux/amd64 image).
func (c *Client) Config(ctx context.Context, ref string) (*v1.ConfigFile, error) {
	img, err := c.Image(ctx, ref)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the configuration of %q: %w", ref, err)
	}
	return cfg, nil
}

// Labels returns the image labels of ref.
func (c *Client) Labels(ctx context.Context, ref string) (map[string]string, error) {
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		return nil, err
	}
	if cfg.Config.Labels == nil {
		return map[string]string{}, nil
	}
	return cfg.Config.Labels, nil
}

// DigestRef returns repo@digest.
func DigestRef(repo, digest string) string { return repo + "@" + digest }

// SplitDigestRef splits repo@sha256:... into the repository and the digest.
func SplitDigestRef(ref string) (repo, digest string, err error) {
	d, err := name.NewDigest(ref)
	if err != nil {
		return "", "", fmt.Errorf("parsing digest reference %q: %w", ref, err)
	}
	return d.Context().Name(), d.DigestStr(), nil
}

// ReadFile returns the content of path (e.g. "etc/containers/policy.json") in the image ref as it would appear in
// the image's root filesystem, reading layers from the top down and stopping at the first layer that holds or
// deletes it. A file the image does not have is (nil, nil).
func (c *Client) ReadFile(ctx context.Context, ref, path string) ([]byte, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, c.RemoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading the layers of %q: %w", ref, err)
	}
	want := strings.TrimPrefix(path, "/")
	dir, base := "", want
	if i := strings.LastIndex(want, "/"); i >= 0 {
		dir, base = want[:i+1], want[i+1:]
	}
	for i := len(layers) - 1; i >= 0; i-- {
		data, found, err := scanLayer(layers[i], want, dir+".wh."+base)
		if err != nil {
			return nil, fmt.Errorf("reading %s from %q: %w", path, ref, err)
		}
		if found {
			return data, nil
		}
	}
	return nil, nil
}

// scanLayer looks for name (or its whiteout) in one layer; a whiteout returns (nil, true).
func scanLayer(l v1.Layer, name, whiteout string) ([]byte, bool, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, false, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		n := strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")
		switch n {
		case whiteout:
			return nil, true, nil
		case name:
			if h.Typeflag != tar.TypeReg {
				return nil, false, fmt.Errorf("%s is not a regular file in the image", name)
			}
			data, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			return data, true, err
		}
	}
}

// Copy copies the manifest srcDigestRef (repository@sha256:...) and its blobs to dstRepo under the same digest.
// Inside one registry go-containerregistry mounts blobs across repositories instead of uploading them.
func (c *Client) Copy(ctx context.Context, srcDigestRef, dstRepo string) error {
	s, err := name.NewDigest(srcDigestRef)
	if err != nil {
		return fmt.Errorf("parsing %q: %w", srcDigestRef, err)
	}
	d, err := name.NewDigest(dstRepo + "@" + s.DigestStr())
	if err != nil {
		return fmt.Errorf("parsing %q: %w", dstRepo, err)
	}
	desc, err := remote.Get(s, c.RemoteOptions(ctx)...)
	if err != nil {
		return fmt.Errorf("reading %q: %w", srcDigestRef, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return fmt.Errorf("reading the index %q: %w", srcDigestRef, err)
		}
		if err := remote.WriteIndex(d, idx, c.RemoteOptions(ctx)...); err != nil {
			return fmt.Errorf("copying %q to %q: %w", srcDigestRef, dstRepo, err)
		}
		return nil
	}
	img, err := desc.Image()
	if err != nil {
		return fmt.Errorf("reading the image %q: %w", srcDigestRef, err)
	}
	if err := remote.Write(d, img, c.RemoteOptions(ctx)...); err != nil {
		return fmt.Errorf("copying %q to %q: %w", srcDigestRef, dstRepo, err)
	}
	return nil
}

// AttachmentTag is cosign's tag for an attachment of a digest: sha256-<hex>.<suffix> (sig, att).
func AttachmentTag(digest, suffix string) string {
	return strings.Replace(digest, ":", "-", 1) + "." + suffix
}

// CopyAttachment copies the cosign attachment (suffix "sig" or "att") of srcDigestRef to dstRepo, if it has one.
func (c *Client) CopyAttachment(ctx context.Context, srcDigestRef, dstRepo, suffix string) error {
	repo, digest, err := SplitDigestRef(srcDigestRef)
	if err != nil {
		return err
	}
	tag := AttachmentTag(digest, suffix)
	ok, err := c.Exists(ctx, repo+":"+tag)
	if err != nil || !ok {
		return err
	}
	d, err := c.Digest(ctx, repo+":"+tag)
	if err != nil {
		return err
	}
	if err := c.Copy(ctx, repo+"@"+d, dstRepo); err != nil {
		return err
	}
	return c.Tag(ctx, dstRepo+"@"+d, tag)
}

// AuthJSON renders a containers auth.json (for buildah, podman, and hosts' /etc/ostree/auth.json) with a username
// and password per registry host.
func AuthJSON(creds map[string][2]string) ([]byte, error) {
	auths := map[string]map[string]string{}
	for host, c := range creds {
		auths[host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(c[0] + ":" + c[1]))}
	}
	b, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return nil, fmt.Errorf("encoding registry credentials: %w", err)
	}
	return b, nil
}

// SetCreated rewrites the creation time of the image digestRef, and of every entry of its history, to t and pushes
// the result as target (repo:tag in the same repository): only a new configuration and manifest are uploaded. It
// returns the new manifest digest. Builders that drop SOURCE_DATE_EPOCH from the image configuration (Dagger's
// DockerBuild keeps only the frontend's config) get reproducible configurations this way.
func (c *Client) SetCreated(ctx context.Context, digestRef, target string, t time.Time) (string, error) {
	r, err := name.NewDigest(digestRef)
	if err != nil {
		return "", fmt.Errorf("parsing digest reference %q: %w", digestRef, err)
	}
	tag, err := name.NewTag(target, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("tag reference %q: %w", target, err)
	}
	img, err := remote.Image(r, c.RemoteOptions(ctx)...)
	if err != nil {
		return "", fmt.Errorf("reading %q: %w", digestRef, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("reading the configuration of %q: %w", digestRef, err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: t.UTC()}
	for i := range cf.History {
		cf.History[i].Created = v1.Time{Time: t.UTC()}
	}
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		return "", fmt.Errorf("setting the creation time of %q: %w", digestRef, err)
	}
	if err := remote.Write(tag, out, c.RemoteOptions(ctx)...); err != nil {
		return "", fmt.Errorf("pushing %q: %w", target, err)
	}
	d, err := out.Digest()
	if err != nil {
		return "", fmt.Errorf("digest of %q: %w", target, err)
	}
	return d.String(), nil
}

// IsUnreachable reports whether err says the registry could not be reached or answered with a server error
// (connection refused or reset, DNS, timeouts, 5xx): a rerun may succeed, unlike a refusal.
func IsUnreachable(err error) bool {
	if err == nil {
		return false
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode >= 500
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		return true
	}
	var oerr *net.OpError
	if errors.As(err, &oerr) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	// cosign flattens some errors into text.
	msg := err.Error()
	for _, m := range []string{"connection refused", "connection reset", "no such host", "i/o timeout", "EOF",
		"status code 500", "status code 502", "status code 503", "status code 504", "Internal Server Error", "Service Unavailable", "Bad Gateway"} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// ValidatePrefix checks the --registry value: a repository prefix without tag or digest.
func ValidatePrefix(r string) error {
	if r == "" {
		return errors.New("--registry is required: the repository prefix layers are pushed under, e.g. ghcr.io/ORG/imagemode (or ttl.sh/imagemode-RANDOM to try the CentOS profiles without an account)")
	}
	if strings.Contains(r, "@") {
		return fmt.Errorf("--registry %q: give a repository prefix, not a digest reference", r)
	}
	if last := r[strings.LastIndex(r, "/")+1:]; strings.Contains(last, ":") && strings.Contains(r, "/") {
		return fmt.Errorf("--registry %q: give a repository prefix without a tag", r)
	}
	if _, err := ParseRepo(strings.TrimSuffix(r, "/") + "/soe"); err != nil {
		return fmt.Errorf("--registry %q: %w", r, err)
	}
	host, _, _ := strings.Cut(r, "/")
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return fmt.Errorf("--registry %q: start with the registry host, e.g. ghcr.io/ORG/imagemode", r)
	}
	return nil
}

// PlainHTTP says whether the registry host is reached over plain HTTP, as this client reaches it: localhost,
// loopback and private (RFC 1918) addresses, like go-containerregistry. Other tools (podman in the disk builder)
// are told the same.
func PlainHTTP(host string) bool {
	r, err := name.NewRegistry(host)
	if err != nil {
		return false
	}
	return r.Scheme() == "http"
}

// rawManifest is a manifest written byte for byte (its digest is the caller's).
type rawManifest struct {
	data      []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.data, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// PutArtifact uploads blobs (each with its media type) to repo and writes manifest, exactly these bytes, under its
// digest; it returns the digest reference. Writing it again is harmless: the same bytes, the same digest.
func (c *Client) PutArtifact(ctx context.Context, repo string, manifest []byte, mediaType string, blobs map[string][]byte) (string, error) {
	r, err := ParseRepo(repo)
	if err != nil {
		return "", err
	}
	for mt, b := range blobs {
		if err := remote.WriteLayer(r, static.NewLayer(b, types.MediaType(mt)), c.RemoteOptions(ctx)...); err != nil {
			return "", fmt.Errorf("uploading a blob to %s: %w", repo, err)
		}
	}
	h, _, err := v1.SHA256(bytes.NewReader(manifest))
	if err != nil {
		return "", err
	}
	ref := r.Digest(h.String())
	if err := remote.Put(ref, rawManifest{data: manifest, mediaType: types.MediaType(mediaType)}, c.RemoteOptions(ctx)...); err != nil {
		return "", fmt.Errorf("writing %s: %w", ref, err)
	}
	return ref.String(), nil
}
