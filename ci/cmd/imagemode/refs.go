package main

import (
	"context"
	"fmt"
	"io"

	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/tags"
)

func runDigest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("digest", "Print the digest an image reference points at (exit status 1 if it does not exist).", stderr)
	image := fs.String("image", "", "image reference (required)")
	var rf registryFlags
	rf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *image == "" {
		return &usageError{msg: "--image is required"}
	}
	reg, err := rf.pushClient(*image)
	if err != nil {
		return err
	}
	ok, err := reg.Exists(ctx, *image)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s does not exist", *image)
	}
	d, err := reg.Digest(ctx, *image)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, d)
	return err
}

func runRetag(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("retag", "Point a tag of an image's repository at the image's digest (a manifest write, no blob upload).", stderr)
	image := fs.String("image", "", "image by digest, repository@sha256:... (required)")
	tag := fs.String("tag", "", "tag to write (required)")
	var rf registryFlags
	rf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *image == "" || *tag == "" {
		return &usageError{msg: "--image and --tag are required"}
	}
	if _, _, err := registry.SplitDigestRef(*image); err != nil {
		return &usageError{msg: fmt.Sprintf("--image %q: give a digest reference", *image)}
	}
	if !tags.Valid(*tag) {
		return &usageError{msg: fmt.Sprintf("--tag %q is not a valid tag", *tag)}
	}
	reg, err := rf.pushClient(*image)
	if err != nil {
		return err
	}
	if err := reg.Tag(ctx, *image, *tag); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "tagged %s as %s\n", *image, *tag)
	return err
}
