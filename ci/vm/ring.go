package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// RingOptions tune a RingConsole.
type RingOptions struct {
	// Interval is the pause between two reads (default 250 ms).
	Interval time.Duration
	// Gone is how many connections to QMP in a row may fail, after QMP answered once, before QEMU counts as
	// exited (default 5).
	Gone int
}

// ringChunk is the most one read takes; a full chunk is followed by another read at once.
const ringChunk = 1 << 20

// RingConsole follows a serial console that QEMU keeps in memory (SerialRing): every Interval it takes what the
// ring holds over QMP, so String is the console from the guest's first byte on, whoever else talks to QEMU.
// QMP that stops taking connections after it answered means QEMU exited: Exited is closed then.
type RingConsole struct {
	qmp QMP
	o   RingOptions

	mu       sync.Mutex
	out      strings.Builder
	reads    int
	failures int
	lastErr  error
	exitErr  error
	exited   chan struct{}
	once     sync.Once
}

// FollowRing starts following the console behind q until ctx ends or QEMU exits.
func FollowRing(ctx context.Context, q QMP, o RingOptions) *RingConsole {
	if o.Interval <= 0 {
		o.Interval = 250 * time.Millisecond
	}
	if o.Gone <= 0 {
		o.Gone = 5
	}
	c := &RingConsole{qmp: q, o: o, exited: make(chan struct{})}
	go c.follow(ctx)
	return c
}

func (c *RingConsole) follow(ctx context.Context) {
	answered, refused := false, 0
	for ctx.Err() == nil {
		b, err := c.qmp.ReadRing(ctx, RingDevice, ringChunk)
		c.mu.Lock()
		if err == nil {
			answered, refused = true, 0
			c.reads++
			c.out.Write(b)
		} else if ctx.Err() == nil {
			c.failures++
			c.lastErr = err
		}
		c.mu.Unlock()
		if err == nil && len(b) == ringChunk {
			continue
		}
		if err != nil && answered && isDialError(err) {
			if refused++; refused >= c.o.Gone {
				c.markExited(fmt.Errorf("QEMU exited (the guest powered off, rebooted with -no-reboot, or panicked): QMP at %s takes no connection: %w", c.qmp.Address, err))
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(c.o.Interval):
		}
	}
}

// isDialError says whether err is a failed connection (nothing listens any more), not a slow answer.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (c *RingConsole) markExited(err error) {
	c.once.Do(func() {
		c.mu.Lock()
		c.exitErr = err
		c.mu.Unlock()
		close(c.exited)
	})
}

// String returns the console so far.
func (c *RingConsole) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// Exited is closed when QEMU stopped answering QMP after it had answered.
func (c *RingConsole) Exited() <-chan struct{} { return c.exited }

// ExitError says why Exited was closed (nil before).
func (c *RingConsole) ExitError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exitErr
}

// State describes the reading so far, for a console that stays empty: how many reads answered and failed, and
// the last failure.
func (c *RingConsole) State() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := fmt.Sprintf("console read over QMP at %s: %d reads, %d bytes, %d failed", c.qmp.Address, c.reads, c.out.Len(), c.failures)
	if c.lastErr != nil {
		s += fmt.Sprintf(" (last: %v)", c.lastErr)
	}
	return s
}
