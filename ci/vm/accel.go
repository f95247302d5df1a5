package vm

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
)

var (
	kvmMu     sync.Mutex
	kvmBroken bool
)

// kvmMarker is where the "KVM cannot run guests on this host" answer is remembered across runs: a file named after
// the host and its kernel, so a new machine (or kernel) tries again.
func kvmMarker() string {
	dir := os.Getenv("IMAGEMODE_CACHE")
	if dir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(d, "imagemode")
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		rel = []byte("unknown")
	}
	return filepath.Join(dir, "kvm-broken-"+host+"-"+strings.TrimSpace(string(rel)))
}

// kvmUsable reports whether /dev/kvm opens and KVM was not found broken on this host before.
func kvmUsable() bool {
	if KVMKnownBroken() {
		return false
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	if err := f.Close(); err != nil {
		return false
	}
	return true
}

// KVMKnownBroken reports whether KVM was found unable to run a guest, by this process or (a marker file) on this
// host before.
func KVMKnownBroken() bool {
	kvmMu.Lock()
	defer kvmMu.Unlock()
	if kvmBroken {
		return true
	}
	if m := kvmMarker(); m != "" {
		if _, err := os.Stat(m); err == nil {
			kvmBroken = true
		}
	}
	return kvmBroken
}

// RememberKVMBroken records that KVM failed to run a guest: for the rest of this process and, in a marker file,
// for later runs on this host.
func RememberKVMBroken() {
	kvmMu.Lock()
	defer kvmMu.Unlock()
	kvmBroken = true
	if m := kvmMarker(); m != "" {
		if err := os.MkdirAll(filepath.Dir(m), 0o755); err == nil {
			if err := os.WriteFile(m, []byte("KVM failed to run a guest; imagemode uses TCG on this host\n"), 0o644); err != nil {
				return
			}
		}
	}
}

// Pool bounds how many VMs run at once.
type Pool struct{ slots chan struct{} }

// NewPool returns a pool of n slots (n < 1: one).
func NewPool(n int) *Pool {
	if n < 1 {
		n = 1
	}
	return &Pool{slots: make(chan struct{}, n)}
}

// Acquire waits for a slot; release it with the returned function.
func (p *Pool) Acquire(done <-chan struct{}) (func(), bool) {
	select {
	case p.slots <- struct{}{}:
		return func() { <-p.slots }, true
	case <-done:
		return func() {}, false
	}
}
