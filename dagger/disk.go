package main

import (
	"context"
	"fmt"
	"strings"

	"dagger/imagemode/internal/dagger"
)

// Disk builder images the error hint names.
const (
	bibCentOS       = "quay.io/centos-bootc/bootc-image-builder:latest"
	bibRHEL10       = "registry.redhat.io/rhel10/bootc-image-builder"
	imageBuilderCLI = "ghcr.io/osbuild/image-builder-cli"
)

// diskImage runs `imagemode disk-image` inside the disk builder's container (privileged: the builder mounts loop
// devices and runs podman). follow "" lets the CLI follow <repository>:<profile> from the image's labels.
func (m *Imagemode) diskImage(ctx context.Context, image, follow, sshKey string) (*dagger.File, error) {
	for _, r := range [][2]string{{"--image", image}, {"--follow", follow}} {
		if err := checkReachable(r[0], r[1]); err != nil {
			return nil, err
		}
	}
	builder := m.DiskBuilder
	if builder == "" {
		builder = bibCentOS
	}
	in := &invocation{verb: "disk-image", args: []string{"--image", image, "--ssh-key", strings.TrimSpace(sshKey), "--disk-builder", builder,
		"--output", "/output/disk.qcow2"}}
	in.ctr = dag.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From(builder).
		WithFile(cliPath, m.cliBinary()).
		// An overlay containers-storage needs a filesystem that is not itself overlayfs: a cache volume is one.
		WithMountedCache("/var/lib/containers/storage", dag.CacheVolume("imagemode-disk-builder-storage"))
	if follow != "" {
		in.arg("--follow", follow)
	}
	in.withRegistryAuth(m)
	in.insecure = true
	o, err := in.run(ctx)
	if err != nil {
		if o == nil {
			return nil, fmt.Errorf("building the disk image of %s with %s: %w\n(is the builder image reachable from the engine, "+
				"with credentials where it needs them? Choose another with --disk-builder: %s, %s or %s)",
				image, builder, err, bibCentOS, bibRHEL10, imageBuilderCLI)
		}
		return nil, err
	}
	disk := o.ctr.File("/output/disk.qcow2")
	if _, err := disk.Sync(ctx); err != nil {
		return nil, fmt.Errorf("reading the disk of %s: %w", image, err)
	}
	return disk, nil
}

// sshKey is a throwaway key pair for test VMs: the public half goes into a disk's config.toml, the private half to
// the CLI that logs in, as a secret.
type sshKey struct {
	public  string
	private *dagger.Secret
}

func (m *Imagemode) sshKey(ctx context.Context) (*sshKey, error) {
	in := m.cli("generate-ssh-key", "--output-prefix", "/work/out/id", "--comment", "imagemode-vm")
	in.ctr = in.ctr.WithDirectory("/work/out", dag.Directory())
	in.fresh = true
	o, err := in.run(ctx)
	if err != nil {
		return nil, err
	}
	pub, err := o.file(ctx, "/work/out/id.pub")
	if err != nil {
		return nil, err
	}
	priv, err := o.file(ctx, "/work/out/id")
	if err != nil {
		return nil, err
	}
	id, err := nonce()
	if err != nil {
		return nil, err
	}
	return &sshKey{public: strings.TrimSpace(pub), private: dag.SetSecret("imagemode-vm-key-"+id, priv)}, nil
}

// withDisks makes a disk of every image (following its channel tag) with one key, and hands them to a smoke-test
// or ci run of the CLI (--mode disk).
func (m *Imagemode) withDisks(ctx context.Context, in *invocation, refs []string) error {
	key, err := m.sshKey(ctx)
	if err != nil {
		return err
	}
	in.arg("--mode", "disk").withSecret("--ssh-key-file", "ssh-key", key.private)
	for i, ref := range refs {
		disk, err := m.diskImage(ctx, ref, "", key.public)
		if err != nil {
			return err
		}
		p := fmt.Sprintf("/work/disks/%d.qcow2", i)
		in.ctr = in.ctr.WithMountedFile(p, disk)
		in.arg("--disk-file", ref+"="+p)
	}
	return nil
}
