// Package inputs computes a layer's input digest: a content hash of everything that determines the layer — its
// Containerfile and build-context files (names, contents, permission bits, symlink targets; not mtimes, not walk
// order), generated files, build arguments, the profile, and the digest of the image it is built FROM. Secret
// inputs that change the image (the bootc-user password hash) enter only as a keyed HMAC. Two runs with the same
// input digest would build the same layer, so the second one reuses the first one's image instead.
package inputs

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Version is mixed into every digest; bump it when the meaning of the inputs changes.
const Version = "imagemode-inputs/v1"

// File is one build-context file.
type File struct {
	Path string
	Mode fs.FileMode
	// Content is the file's bytes (regular files) or the link target (symlinks).
	Content []byte
}

// Inputs is everything that determines a layer.
type Inputs struct {
	Layer         string
	Profile       string
	Containerfile string
	// ParentDigest is the digest of the image the layer is built FROM (the base image's for the root).
	ParentDigest string
	Files        []File
	// Generated files added to the context (path → content), e.g. the host trust policy.
	Generated map[string][]byte
	// BuildArgs, without BASE_IMAGE (its digest is ParentDigest; its registry name is not an input).
	BuildArgs map[string]string
	// Labels that come from inputs (not the revision: a reused image keeps the commit it was built from).
	Labels map[string]string
	// Secrets that change the image's content, by id. Only their HMAC under Key enters the digest.
	Secrets map[string][]byte
	// Key keys the HMAC of secrets.
	Key []byte
	// SourceDateEpoch, when asked for, sets the images' timestamps: an input (0 adds nothing, so digests of runs
	// without it are unchanged).
	SourceDateEpoch int64
}

// defaultKey separates imagemode's secret HMACs from other uses of the same value when no key is configured.
var defaultKey = []byte("imagemode input digest: secret inputs")

// Digest returns "sha256:<hex>" of the canonical encoding of in.
func Digest(in Inputs) (string, error) {
	if in.ParentDigest == "" {
		return "", fmt.Errorf("layer %q: no parent digest to compute its inputs from", in.Layer)
	}
	h := sha256.New()
	w := func(kind string, fields ...string) {
		// Length-prefixed fields: no two different inputs encode the same.
		fmt.Fprintf(h, "%s", kind)
		for _, f := range fields {
			fmt.Fprintf(h, " %d:%s", len(f), f)
		}
		h.Write([]byte{'\n'})
	}
	w("version", Version)
	w("layer", in.Layer)
	w("profile", in.Profile)
	w("containerfile", path.Clean(in.Containerfile))
	w("parent", in.ParentDigest)
	if in.SourceDateEpoch != 0 {
		w("source-date-epoch", strconv.FormatInt(in.SourceDateEpoch, 10))
	}
	files := append([]File(nil), in.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for i, f := range files {
		if i > 0 && files[i-1].Path == f.Path {
			return "", fmt.Errorf("layer %q: file %q listed twice", in.Layer, f.Path)
		}
		kind := "file"
		if f.Mode&fs.ModeSymlink != 0 {
			kind = "symlink"
		}
		sum := sha256.Sum256(f.Content)
		w(kind, path.Clean(f.Path), fmt.Sprintf("%04o", f.Mode.Perm()), hex.EncodeToString(sum[:]))
	}
	for _, k := range sortedKeys(in.Generated) {
		sum := sha256.Sum256(in.Generated[k])
		w("generated", path.Clean(k), hex.EncodeToString(sum[:]))
	}
	for _, k := range sortedKeys(in.BuildArgs) {
		if k == "BASE_IMAGE" {
			continue
		}
		w("arg", k, in.BuildArgs[k])
	}
	for _, k := range sortedKeys(in.Labels) {
		w("label", k, in.Labels[k])
	}
	key := in.Key
	if len(key) == 0 {
		key = defaultKey
	}
	for _, id := range sortedKeys(in.Secrets) {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id))
		m.Write([]byte{0})
		m.Write(in.Secrets[id])
		w("secret", id, hex.EncodeToString(m.Sum(nil)))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Short is the first 12 hex digits of a digest, for logs.
func Short(d string) string {
	_, hexd, _ := strings.Cut(d, ":")
	if len(hexd) > 12 {
		return hexd[:12]
	}
	return hexd
}
