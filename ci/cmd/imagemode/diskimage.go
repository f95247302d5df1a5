package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/imagemode/imagemode/ci/diskimage"
	"github.com/imagemode/imagemode/ci/guest"
	"github.com/imagemode/imagemode/ci/layers"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/smoke"
)

// diskFlags are the disks of disk mode (made by the disk builder) and the SSH key they authorize.
type diskFlags struct {
	disks   multiFlag
	sshKey  string
	sshUser string
}

func (d *diskFlags) register(fs *flag.FlagSet) {
	fs.Var(&d.disks, "disk-file", "disk mode: IMAGE=FILE, the qcow2 the disk builder made of IMAGE (repository@sha256:...; repeatable)")
	fs.StringVar(&d.sshKey, "ssh-key-file", "", "disk mode: OpenSSH private key whose public key the disks authorize (imagemode generate-ssh-key)")
	fs.StringVar(&d.sshUser, "ssh-user", "bootc-user", "disk mode: the user the disks' config.toml made (sudo for bootc)")
}

// booter is the host booter with the disks of disk mode, checked: every image has one disk, every disk exists.
func (d *diskFlags) booter(reg *registry.Client, mode string) (smoke.HostBooter, error) {
	b := smoke.HostBooter{Reg: reg, SSHUser: d.sshUser}
	if mode != smoke.ModeDisk {
		if len(d.disks) > 0 || d.sshKey != "" {
			return b, &usageError{msg: "--disk-file and --ssh-key-file go with --mode disk"}
		}
		return b, nil
	}
	if len(d.disks) == 0 || d.sshKey == "" {
		return b, &usageError{msg: "--mode disk needs --disk-file IMAGE=FILE for every image and --ssh-key-file (the Dagger module makes them: smoke-test --disk)"}
	}
	b.Disks = map[string]string{}
	for _, kv := range d.disks {
		img, file, ok := strings.Cut(kv, "=")
		if !ok || img == "" || file == "" {
			return b, &usageError{msg: fmt.Sprintf("--disk-file %q: want IMAGE=FILE", kv)}
		}
		if _, _, err := registry.SplitDigestRef(img); err != nil {
			return b, &usageError{msg: fmt.Sprintf("--disk-file %q: the image must be a digest reference", kv)}
		}
		if _, err := os.Stat(file); err != nil {
			return b, &usageError{msg: fmt.Sprintf("--disk-file %q: %v", kv, err)}
		}
		if _, dup := b.Disks[img]; dup {
			return b, &usageError{msg: fmt.Sprintf("--disk-file: two disks for %s", img)}
		}
		b.Disks[img] = file
	}
	key, err := guest.ReadKey(d.sshKey)
	if err != nil {
		return b, &usageError{msg: "--ssh-key-file: " + err.Error()}
	}
	b.SSHKey = key
	return b, nil
}

func runGenerateSSHKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("generate-ssh-key", "Make a throwaway ed25519 SSH key pair for booted test VMs: PREFIX (private, mode 0600) and PREFIX.pub (the\nauthorized_keys line a disk's config.toml installs for bootc-user).", stderr)
	prefix := fs.String("output-prefix", "", "file name prefix (required)")
	comment := fs.String("comment", "imagemode-test", "comment of the public key")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *prefix == "" {
		return &usageError{msg: "--output-prefix is required"}
	}
	for _, p := range []string{*prefix, *prefix + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			return &usageError{msg: fmt.Sprintf("%s exists: not overwriting a key", p)}
		}
	}
	key, err := guest.NewKey(*comment)
	if err != nil {
		return err
	}
	if err := writeFile(*prefix+".pub", []byte(key.Authorized+"\n"), 0o644); err != nil {
		return err
	}
	if err := writeFile(*prefix, key.PrivatePEM, 0o600); err != nil {
		os.Remove(*prefix + ".pub")
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s.pub\n", *prefix, *prefix)
	return nil
}

func runDiskImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("disk-image", "Make a qcow2 disk of an image with bootc-image-builder or image-builder. Runs inside the disk builder's\ncontainer (privileged; `dagger call disk-image` runs it there): pulls the image by digest into\ncontainers-storage, tags it with --follow (so bootc upgrade works on the host), installs bootc-user with\n--ssh-key from config.toml, and writes the disk to --output.", stderr)
	image := fs.String("image", "", mhelp("disk-image.image"))
	follow := fs.String("follow", "", mhelp("disk-image.follow", "Default: <repository>:<profile label>."))
	sshKey := fs.String("ssh-key", "", mhelp("disk-image.ssh-key"))
	builder := fs.String("disk-builder", diskimage.BIBCentOS, mhelp("new.disk-builder", "Here it names the builder this runs in (its command line)."))
	output := fs.String("output", "/output/disk.qcow2", "where the disk is written")
	var rf registryFlags
	rf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *image == "" || *sshKey == "" {
		return &usageError{msg: "--image and --ssh-key are required"}
	}
	repo, _, err := registry.SplitDigestRef(*image)
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--image %q: disk images are made of digests (repository@sha256:...)", *image)}
	}
	conf, err := diskimage.ConfigTOML(diskimage.Config{Users: []diskimage.User{{Name: "bootc-user", Key: strings.TrimSpace(*sshKey), Groups: []string{"wheel"}}}})
	if err != nil {
		return &usageError{msg: "--ssh-key: " + err.Error()}
	}
	creds, err := rf.credentials(*image, "")
	if err != nil {
		return err
	}
	if *follow == "" {
		// The host follows the layer's channel tag of its profile: <repository>:<profile>.
		client, err := rf.client(creds...)
		if err != nil {
			return err
		}
		labels, err := client.Labels(ctx, *image)
		if err != nil {
			return fmt.Errorf("--image %s: reading its profile label (or pass --follow): %w", *image, err)
		}
		p := labels[layers.LabelProfile]
		if p == "" {
			return &usageError{msg: fmt.Sprintf("--image %s has no %s label: pass --follow", *image, layers.LabelProfile)}
		}
		*follow = repo + ":" + p
	}
	host, _, _ := strings.Cut(*image, "/")
	job := diskimage.Job{Kind: diskimage.KindOf(*builder), Image: *image, Follow: *follow, TLSVerify: !registry.PlainHTTP(host)}
	if len(creds) > 0 {
		authFile, rm, err := writeAuthFile(creds)
		if err != nil {
			return err
		}
		defer rm()
		job.AuthFile = authFile
	}
	script, err := diskimage.Script(job)
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	tool := "bootc-image-builder"
	if job.Kind == diskimage.KindImageBuilder {
		tool = "image-builder"
	}
	if _, err := exec.LookPath(tool); err != nil {
		return fmt.Errorf("%s is not on PATH: disk-image runs inside the disk builder's container (%s or %s), e.g. `dagger call disk-image`", tool, diskimage.BIBCentOS, diskimage.ImageBuilderCLI)
	}
	if err := os.WriteFile("/config.toml", conf, 0o644); err != nil {
		return fmt.Errorf("writing /config.toml: %w", err)
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building the disk of %s with %s: %w", *image, *builder, err)
	}
	if *output != "/output/disk.qcow2" {
		if err := os.MkdirAll(filepath.Dir(*output), 0o755); err != nil {
			return err
		}
		if err := os.Rename("/output/disk.qcow2", *output); err != nil {
			return fmt.Errorf("moving the disk to %s: %w", *output, err)
		}
	}
	fmt.Fprintf(stdout, "wrote %s\n", *output)
	return nil
}
