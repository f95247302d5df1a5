package vm

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestRingConsoleKeepsEverything: output written before the first read, between reads and in more than one read's
// chunk all arrives, in order.
func TestRingConsoleKeepsEverything(t *testing.T) {
	f := newFakeQMP(t)
	f.emit([]byte("[    0.000000] Linux version 6.1\n")) // before anyone reads
	c := FollowRing(t.Context(), QMP{Network: "tcp", Address: f.l.Addr().String()}, RingOptions{Interval: 10 * time.Millisecond})
	big := bytes.Repeat([]byte("x"), ringChunk+ringChunk/2)
	f.emit(big)
	f.emit([]byte("\nReached target multi-user.target\n"))
	want := "[    0.000000] Linux version 6.1\n" + string(big) + "\nReached target multi-user.target\n"
	deadline := time.Now().Add(10 * time.Second)
	for c.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("console has %d bytes, want %d; %s", len(c.String()), len(want), c.State())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-c.Exited():
		t.Fatalf("exited while QMP answers: %v", c.ExitError())
	default:
	}
	if s := c.State(); !strings.Contains(s, "0 failed") {
		t.Errorf("state: %s", s)
	}
}

// TestRingConsoleNoticesExit: QMP that stops taking connections after it answered means QEMU exited.
func TestRingConsoleNoticesExit(t *testing.T) {
	f := newFakeQMP(t)
	f.emit([]byte("booting\n"))
	c := FollowRing(t.Context(), QMP{Network: "tcp", Address: f.l.Addr().String()}, RingOptions{Interval: 10 * time.Millisecond, Gone: 3})
	for c.String() == "" {
		time.Sleep(10 * time.Millisecond)
	}
	if err := f.l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Exited():
	case <-time.After(5 * time.Second):
		t.Fatalf("no exit noticed; %s", c.State())
	}
	if err := c.ExitError(); err == nil || !strings.Contains(err.Error(), "QEMU exited") {
		t.Errorf("exit error: %v", err)
	}
	if c.String() != "booting\n" {
		t.Errorf("console %q", c.String())
	}
}

// TestRingConsoleBeforeQEMU: refused connections before QMP ever answered are not an exit (QEMU may not listen
// yet); they show in the state.
func TestRingConsoleBeforeQEMU(t *testing.T) {
	f := newFakeQMP(t)
	addr := f.l.Addr().String()
	if err := f.l.Close(); err != nil {
		t.Fatal(err)
	}
	c := FollowRing(t.Context(), QMP{Network: "tcp", Address: addr}, RingOptions{Interval: 5 * time.Millisecond, Gone: 2})
	time.Sleep(200 * time.Millisecond)
	select {
	case <-c.Exited():
		t.Fatalf("exited before QEMU ever answered: %v", c.ExitError())
	default:
	}
	if s := c.State(); !strings.Contains(s, "0 reads") || !strings.Contains(s, "connecting to QMP") {
		t.Errorf("state: %s", s)
	}
}

// TestReadRingErrors: QMP's own errors (a device that is not there) are errors, not an empty console.
func TestReadRingErrors(t *testing.T) {
	f := newFakeQMP(t)
	q := QMP{Network: "tcp", Address: f.l.Addr().String()}
	if _, err := q.ReadRing(t.Context(), "other", 10); err == nil || !strings.Contains(err.Error(), "DeviceNotFound") {
		t.Errorf("unknown device: %v", err)
	}
	f.emit([]byte("abc"))
	if b, err := q.ReadRing(t.Context(), RingDevice, 2); err != nil || string(b) != "ab" {
		t.Errorf("ReadRing = %q, %v", b, err)
	}
	if b, err := q.ReadRing(t.Context(), RingDevice, 10); err != nil || string(b) != "c" {
		t.Errorf("ReadRing = %q, %v", b, err)
	}
}
