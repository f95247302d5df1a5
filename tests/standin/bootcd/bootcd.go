// Package bootcd is the host side of the stand-in bootc: it keeps a stand-in VM's deployments and makes reboots
// serve the next one, so that the life-cycle orchestration (ci/lifecycle) runs for real against a VM here, where
// real bootc cannot.
//
// The guest's /usr/bin/bootc (tests/standin/rootfs) sends status, switch, upgrade and rollback requests over HTTP
// to the backend, which resolves references in the registry, checks the host's signature policy with
// containers/image (tests/sigpolicy, the engine bootc itself uses) and stages deployments. QEMU runs with
// -no-reboot: when the guest reboots, QEMU exits and the host boots the staged (or rolled-back, or same)
// deployment — a root disk made from that image, with the previous deployment's local /etc changes carried over
// (bootc's 3-way merge, simplified: changed and added files) and a persistent /var disk (bootc never touches /var).
package bootcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/imagemode/imagemode/ci/ephemeral"
	"github.com/imagemode/imagemode/ci/guest"
	"github.com/imagemode/imagemode/ci/policy"
	"github.com/imagemode/imagemode/ci/registry"
	"github.com/imagemode/imagemode/ci/vm"
)

// Deployment is one bootable image.
type Deployment struct {
	// Ref is the reference the host follows (a tag for upgrades, or a digest reference).
	Ref    string
	Digest string
}

// Faults make the host misbehave, to prove the orchestration reports it.
type Faults struct {
	// NeverComesBack: after the first reboot, no VM is started again.
	NeverComesBack bool
	// WrongDigest: the next staged deployment is booted, but the status reports this digest instead.
	WrongDigest string
	// BreakAfterRollback: the rollback deployment boots with Apache masked.
	BreakAfterRollback bool
}

// Config sets up a host.
type Config struct {
	Registry *registry.Client
	// SigPolicy is the containers/image verifier binary (tests/sigpolicy).
	SigPolicy string
	// Initial is the first deployment.
	Initial Deployment
	// Key is authorized for root over SSH.
	Key guest.Key
	// GuestPorts are forwarded from 127.0.0.1 (22 is always).
	GuestPorts []int
	// Credentials are passed to every boot (e.g. the MariaDB user).
	Credentials map[string]string
	Accel       vm.Accel
	MemoryMB    int
	Work        string
	Faults      Faults
	Log         func(format string, args ...any)
}

// Host is a stand-in bootc host.
type Host struct {
	cfg      Config
	srv      *http.Server
	backend  string
	forwards []vm.Forward
	varDisk  string

	mu             sync.Mutex
	booted         Deployment
	staged         *Deployment
	rollback       *Deployment
	rollbackQueued bool
	reported       string
	boots          int
	machine        *vm.VM
	disk           string
	etcSums        map[string]string
	serial         strings.Builder
	closed         bool
	done           chan struct{}
	loopErr        error
}

// Start boots the initial deployment and serves the backend until Close.
func Start(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("backend listener: %w", err)
	}
	h := &Host{cfg: cfg, booted: cfg.Initial, done: make(chan struct{}), varDisk: filepath.Join(cfg.Work, "var.raw")}
	port := l.Addr().(*net.TCPAddr).Port
	// With QEMU's user networking the guest reaches the host's loopback at 10.0.2.2.
	h.backend = fmt.Sprintf("10.0.2.2:%d", port)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", h.status)
	mux.HandleFunc("POST /switch", h.switchTo)
	mux.HandleFunc("POST /upgrade", h.upgrade)
	mux.HandleFunc("GET /upgrade-check", h.upgradeCheck)
	mux.HandleFunc("POST /rollback", h.doRollback)
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := h.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Log("bootcd: backend: %v", err)
		}
	}()
	for _, p := range append([]int{22}, cfg.GuestPorts...) {
		fp, err := vm.FreePort()
		if err != nil {
			return nil, err
		}
		h.forwards = append(h.forwards, vm.Forward{Guest: p, Host: fp})
	}
	if err := h.boot(ctx, cfg.Initial, ""); err != nil {
		h.srv.Close()
		return nil, err
	}
	go h.loop(ctx)
	return h, nil
}

// Addr implements lifecycle.Machine.
func (h *Host) Addr(p int) string {
	for _, f := range h.forwards {
		if f.Guest == p {
			return fmt.Sprintf("127.0.0.1:%d", f.Host)
		}
	}
	return ""
}

// Serial returns the consoles of all boots so far.
func (h *Host) Serial() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := ""
	if h.machine != nil {
		cur = h.machine.Serial()
	}
	return h.serial.String() + cur
}

// Boots is how many times a VM was started.
func (h *Host) Boots() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.boots
}

// Close stops the VM and the backend.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	m := h.machine
	h.mu.Unlock()
	var first error
	if m != nil {
		first = m.Close()
	}
	<-h.done
	if err := h.srv.Close(); err != nil && first == nil {
		first = err
	}
	return first
}

// boot prepares a root disk for d (carrying local /etc changes from the previous disk) and starts QEMU.
func (h *Host) boot(ctx context.Context, d Deployment, extraKarg string) error {
	h.mu.Lock()
	prevDisk, prevSums := h.disk, h.etcSums
	h.mu.Unlock()
	extra := []ephemeral.File{{Path: "/root/.ssh/authorized_keys", Content: []byte(h.cfg.Key.Authorized + "\n"), Mode: 0o600}}
	if prevDisk != "" {
		carried, err := localEtcChanges(ctx, prevDisk, prevSums, h.cfg.Work)
		if err != nil {
			return err
		}
		extra = append(extra, carried...)
	}
	ref := d.Ref
	if !strings.Contains(ref, "@") {
		ref = registryRepo(d.Ref) + "@" + d.Digest
	}
	b, err := ephemeral.Prepare(ctx, h.cfg.Registry, ref, h.cfg.Work, ephemeral.Options{Extra: extra, VarDisk: h.varDisk, VarLabel: "standinvar"})
	if err != nil {
		return err
	}
	cmdline := b.Cmdline() + " imagemode.standin.backend=" + h.backend + " imagemode.standin.var"
	if extraKarg != "" {
		cmdline += " " + extraKarg
	}
	cfg := vm.Config{Kernel: b.Kernel, Initrd: b.Initrd, Append: cmdline, Disk: b.Disk, Format: "raw", NoReboot: true,
		MemoryMB: h.cfg.MemoryMB, Forwards: h.forwards, Credentials: h.cfg.Credentials,
		ExtraDisks: []string{h.varDisk}}
	m, err := vm.Start(ctx, cfg, h.cfg.Accel)
	if err != nil {
		return err
	}
	h.mu.Lock()
	if prevDisk != "" {
		if err := os.RemoveAll(filepath.Dir(prevDisk)); err != nil {
			h.cfg.Log("bootcd: removing the previous deployment: %v", err)
		}
	}
	h.machine, h.disk, h.etcSums, h.boots = m, b.Disk, b.EtcSums, h.boots+1
	h.mu.Unlock()
	h.cfg.Log("bootcd: boot %d: %s (%s)", h.Boots(), d.Ref, d.Digest)
	return nil
}

// loop reboots into the next deployment whenever the guest reboots (QEMU exits with -no-reboot).
func (h *Host) loop(ctx context.Context) {
	defer close(h.done)
	for {
		h.mu.Lock()
		m := h.machine
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			if err := m.Close(); err != nil {
				h.cfg.Log("bootcd: %v", err)
			}
			return
		case <-m.Exited():
		}
		h.mu.Lock()
		h.serial.WriteString(m.Serial())
		if err := m.Close(); err != nil {
			h.cfg.Log("bootcd: %v", err)
		}
		if h.closed || h.cfg.Faults.NeverComesBack {
			h.mu.Unlock()
			return
		}
		next, karg := h.booted, ""
		switch {
		case h.rollbackQueued && h.rollback != nil:
			next, h.rollback = *h.rollback, &Deployment{Ref: h.booted.Ref, Digest: h.booted.Digest}
			h.rollbackQueued = false
			if h.cfg.Faults.BreakAfterRollback {
				karg = "systemd.mask=apache2.service"
			}
		case h.staged != nil:
			next, h.rollback = *h.staged, &Deployment{Ref: h.booted.Ref, Digest: h.booted.Digest}
			if h.cfg.Faults.WrongDigest != "" {
				h.reported = h.cfg.Faults.WrongDigest
			}
		}
		h.staged = nil
		h.booted = next
		h.mu.Unlock()
		if err := h.boot(ctx, next, karg); err != nil {
			h.mu.Lock()
			h.loopErr = err
			h.mu.Unlock()
			h.cfg.Log("bootcd: booting %s: %v", next.Ref, err)
			return
		}
	}
}

func registryRepo(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		return ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i]
	}
	return ref
}

type imageJSON struct {
	Image struct {
		Image     string `json:"image"`
		Transport string `json:"transport"`
	} `json:"image"`
	ImageDigest string `json:"imageDigest"`
}

func entry(d *Deployment) any {
	if d == nil {
		return nil
	}
	var e imageJSON
	e.Image.Image, e.Image.Transport, e.ImageDigest = d.Ref, "registry", d.Digest
	return map[string]any{"image": e, "pinned": false, "store": "imagemode-standin"}
}

func (h *Host) status(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	booted := h.booted
	if h.reported != "" {
		booted.Digest = h.reported
	}
	doc := map[string]any{
		"apiVersion": "org.containers.bootc/v1", "kind": "BootcHost",
		"metadata": map[string]any{"name": "host"},
		"spec":     map[string]any{"image": map[string]string{"image": h.booted.Ref, "transport": "registry"}},
		"status": map[string]any{
			"staged": entry(h.staged), "booted": entry(&booted), "rollback": entry(h.rollback),
			"rollbackQueued": h.rollbackQueued, "type": "bootcHost",
		},
	}
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(doc); err != nil {
		h.cfg.Log("bootcd: status: %v", err)
	}
}

func reply(w http.ResponseWriter, code int, format string, args ...any) {
	w.WriteHeader(code)
	fmt.Fprintf(w, format+"\n", args...)
}

// stage resolves ref, checks the booted deployment's signature policy and stages it.
func (h *Host) stage(w http.ResponseWriter, r *http.Request, ref string) {
	ctx := r.Context()
	d, err := h.cfg.Registry.Digest(ctx, ref)
	if err != nil {
		reply(w, http.StatusBadGateway, "error: resolving %s: %v", ref, err)
		return
	}
	h.mu.Lock()
	booted := h.booted
	h.mu.Unlock()
	if err := h.policyAllows(ctx, booted, registryRepo(ref)+"@"+d); err != nil {
		reply(w, http.StatusForbidden, "error: %v", err)
		return
	}
	h.mu.Lock()
	h.staged = &Deployment{Ref: ref, Digest: d}
	h.rollbackQueued = false
	h.mu.Unlock()
	reply(w, http.StatusOK, "Fetched %s (%s)\nQueued for next boot", ref, d)
}

func (h *Host) switchTo(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		reply(w, http.StatusBadRequest, "error: no image")
		return
	}
	h.stage(w, r, ref)
}

func (h *Host) upgrade(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	booted := h.booted
	h.mu.Unlock()
	d, err := h.cfg.Registry.Digest(r.Context(), booted.Ref)
	if err != nil {
		reply(w, http.StatusBadGateway, "error: resolving %s: %v", booted.Ref, err)
		return
	}
	if d == booted.Digest {
		reply(w, http.StatusOK, "No changes in: %s", booted.Ref)
		return
	}
	h.stage(w, r, booted.Ref)
}

func (h *Host) upgradeCheck(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	booted := h.booted
	h.mu.Unlock()
	d, err := h.cfg.Registry.Digest(r.Context(), booted.Ref)
	if err != nil {
		reply(w, http.StatusBadGateway, "error: %v", err)
		return
	}
	if d == booted.Digest {
		reply(w, http.StatusOK, "No changes in: %s", booted.Ref)
		return
	}
	reply(w, http.StatusOK, "Update available for %s: %s", booted.Ref, d)
}

func (h *Host) doRollback(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rollback == nil {
		reply(w, http.StatusBadRequest, "error: no rollback deployment")
		return
	}
	h.rollbackQueued, h.staged = true, nil
	reply(w, http.StatusOK, "Next boot: rollback deployment %s", h.rollback.Digest)
}

// policyAllows evaluates the booted image's /etc/containers policy (when it ships one) for target with
// containers/image, as bootc would.
func (h *Host) policyAllows(ctx context.Context, booted Deployment, target string) error {
	src := registryRepo(booted.Ref) + "@" + booted.Digest
	root, err := os.MkdirTemp(h.cfg.Work, "policy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	found := false
	for _, p := range []string{policy.PolicyPath, policy.RegistriesDPath, policy.KeyPath} {
		data, err := h.cfg.Registry.ReadFile(ctx, src, p)
		if err != nil {
			return fmt.Errorf("reading %s from the booted image: %w", p, err)
		}
		if data == nil {
			continue
		}
		found = found || p == policy.PolicyPath
		dst := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
	}
	if !found {
		return nil
	}
	out, err := exec.CommandContext(ctx, h.cfg.SigPolicy, "--root", root, "--image", target).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s", strings.TrimSpace(string(out)))
	}
	return nil
}

// localEtcChanges dumps /etc of a deployment's root disk (debugfs, no mount) and returns the files that differ from
// the image's own /etc.
func localEtcChanges(ctx context.Context, disk string, pristine map[string]string, work string) ([]ephemeral.File, error) {
	dir, err := os.MkdirTemp(work, "etc-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out, err := exec.CommandContext(ctx, "debugfs", "-R", "rdump /etc "+dir, disk).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("debugfs rdump /etc: %w\n%s", err, out)
	}
	sums, err := ephemeral.Sums(filepath.Join(dir, "etc"))
	if err != nil {
		return nil, err
	}
	var files []ephemeral.File
	for p, sum := range sums {
		if pristine[p] == sum {
			continue
		}
		full := filepath.Join(dir, "etc", filepath.FromSlash(p))
		data, err := os.ReadFile(full)
		if err != nil {
			return nil, err
		}
		info, err := os.Stat(full)
		if err != nil {
			return nil, err
		}
		files = append(files, ephemeral.File{Path: path.Join("/etc", p), Content: data, Mode: info.Mode().Perm()})
	}
	return files, nil
}
