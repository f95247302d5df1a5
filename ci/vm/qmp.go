package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// QMP is a QEMU Machine Protocol endpoint: a unix socket next to a QEMU on this host, or a TCP port of the service
// container a QEMU runs in under Dagger. Every call opens its own connection (QEMU serves one client at a time).
type QMP struct {
	// Network is "unix" or "tcp"; Address the socket path or host:port.
	Network, Address string
}

// Status asks for the run state: running, paused, internal-error (KVM could not run the guest; QEMU pauses, it
// does not exit), shutdown, ...
func (q QMP) Status(ctx context.Context) (string, error) {
	var out struct {
		Return struct {
			Status string `json:"status"`
		} `json:"return"`
	}
	if err := q.command(ctx, "query-status", nil, &out); err != nil {
		return "", err
	}
	return out.Return.Status, nil
}

// Quit asks QEMU to exit, waiting at most timeout (it also runs after a context ended).
func (q QMP) Quit(timeout time.Duration) error {
	conn, err := net.DialTimeout(q.Network, q.Address, timeout)
	if err != nil {
		return fmt.Errorf("connecting to QMP at %s: %w", q.Address, err)
	}
	defer conn.Close()
	return qmpDo(conn, time.Now().Add(timeout), "quit", nil, nil)
}

func (q QMP) command(ctx context.Context, command string, args, out any) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, q.Network, q.Address)
	if err != nil {
		return fmt.Errorf("connecting to QMP at %s: %w", q.Address, err)
	}
	defer conn.Close()
	dl, ok := ctx.Deadline()
	if !ok || time.Until(dl) > 5*time.Second {
		dl = time.Now().Add(5 * time.Second)
	}
	return qmpDo(conn, dl, command, args, out)
}

// qmpDo runs one command (with args, when not nil) after the capabilities handshake and decodes the answer into
// out.
func qmpDo(conn net.Conn, deadline time.Time, command string, args, out any) error {
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("QMP deadline: %w", err)
	}
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // greeting
		return fmt.Errorf("reading the QMP greeting: %w", err)
	}
	for _, cmd := range []string{"qmp_capabilities", command} {
		req := map[string]any{"execute": cmd}
		if cmd == command && args != nil {
			req["arguments"] = args
		}
		line, err := json.Marshal(req)
		if err != nil {
			return fmt.Errorf("QMP %s: %w", cmd, err)
		}
		if _, err := conn.Write(append(line, '\n')); err != nil {
			return fmt.Errorf("QMP %s: %w", cmd, err)
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				if cmd == "quit" && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
					return nil
				}
				return fmt.Errorf("QMP %s: %w", cmd, err)
			}
			if strings.Contains(line, `"event"`) {
				continue
			}
			if strings.Contains(line, `"error"`) {
				return fmt.Errorf("QMP %s: %s", cmd, strings.TrimSpace(line))
			}
			if cmd == command && out != nil {
				if err := json.Unmarshal([]byte(line), out); err != nil {
					return fmt.Errorf("QMP %s: %w", cmd, err)
				}
			}
			break
		}
	}
	return nil
}
