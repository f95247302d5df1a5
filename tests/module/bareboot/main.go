// Command bareboot is the module P1 benchmark's reference boot: it prepares the ephemeral boot of an image with
// the project's own code (ci/ephemeral, as `imagemode smoke` does), starts QEMU with it (ci/vm) and polls the
// guest's page every 100 ms, each attempt limited to 2 s, without any smoke machinery. It prints
// "bare <milliseconds from QEMU's start to the first answer holding --expect>". The benchmark runs it in the
// module's toolbox container, beside `imagemode smoke` of the same image.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/imagemode/imagemode/ci/ephemeral"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/vm"
)

func main() {
	image := flag.String("image", "", "image by digest")
	accel := flag.String("accel", "tcg", "kvm or tcg")
	expect := flag.String("expect", "Image Mode for RHEL", "text the page must hold")
	deadline := flag.Duration("deadline", 240*time.Second, "give up after this long")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ms, err := bare(ctx, *image, vm.Accel(*accel), *expect, *deadline)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bareboot: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("bare %d\n", ms)
}

func bare(ctx context.Context, image string, accel vm.Accel, expect string, deadline time.Duration) (int64, error) {
	boot, err := ephemeral.FromImage(ctx, registry.New(), image, "")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := boot.Cleanup(); err != nil {
			fmt.Fprintf(os.Stderr, "bareboot: %v\n", err)
		}
	}()
	v, err := vm.Start(ctx, vm.Config{Kernel: boot.Kernel, Initrd: boot.Initrd, Append: boot.Cmdline(), Disk: boot.Disk,
		Format: "raw", Snapshot: true, NoReboot: true, Forwards: []vm.Forward{{Guest: 80}}}, accel)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := v.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "bareboot: %v\n", err)
		}
	}()
	url := "http://" + v.Addr(80) + "/"
	client := &http.Client{Timeout: 2 * time.Second}
	for time.Since(v.Started()) < deadline {
		resp, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == 200 && strings.Contains(string(body), expect) {
				return time.Since(v.Started()).Milliseconds(), nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("no answer holding %q within %s", expect, deadline)
}
