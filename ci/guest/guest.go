// Package guest runs commands in a booted VM over SSH (golang.org/x/crypto/ssh) and keeps a transcript of every
// command and its output, for smoke and life-cycle reports.
package guest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Key is a per-run SSH key pair.
type Key struct {
	Signer ssh.Signer
	// Authorized is the public key as one authorized_keys line.
	Authorized string
	// PrivatePEM is the private key in OpenSSH's format, for the one other process that logs in with it (the disk
	// is made in one container, booted in another); nil for a parsed key.
	PrivatePEM []byte
}

// NewKey makes an ed25519 key for one run.
func NewKey(comment string) (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("making an SSH key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return Key{}, fmt.Errorf("making an SSH key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return Key{}, fmt.Errorf("encoding the SSH key: %w", err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
	if comment != "" {
		line += " " + comment
	}
	return Key{Signer: s, Authorized: line, PrivatePEM: pem.EncodeToMemory(block)}, nil
}

// ReadKey reads a private key file (unencrypted OpenSSH or PEM).
func ReadKey(file string) (Key, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Key{}, fmt.Errorf("reading the SSH key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", file, err)
	}
	return Key{Signer: s, Authorized: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))}, nil
}

// Entry is one command of a transcript.
type Entry struct {
	Command    string    `json:"command"`
	Stdout     string    `json:"stdout"`
	Stderr     string    `json:"stderr,omitempty"`
	ExitStatus int       `json:"exitStatus"`
	Error      string    `json:"error,omitempty"`
	Started    time.Time `json:"started"`
	DurationMS int64     `json:"durationMs"`
}

// Transcript records commands; safe for concurrent use.
type Transcript struct {
	mu      sync.Mutex
	entries []Entry
}

func (t *Transcript) add(e Entry) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries = append(t.entries, e)
}

// Entries returns a copy of the transcript.
func (t *Transcript) Entries() []Entry {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Entry(nil), t.entries...)
}

// Client is an SSH connection to a guest.
type Client struct {
	c        *ssh.Client
	t        *Transcript
	HostKey  string
	Addr     string
	username string
}

// Dial connects to addr as user with the key. Test VMs are made per run, so their host key cannot be known in
// advance: it is accepted and recorded (HostKey) — never use this for hosts you did not just boot.
func Dial(ctx context.Context, addr, user string, key Key, t *Transcript) (*Client, error) {
	var hostKey string
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(key.Signer)},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			hostKey = ssh.FingerprintSHA256(k)
			return nil
		},
		Timeout: 10 * time.Second,
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssh %s@%s: %w", user, addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			conn.Close()
			return nil, fmt.Errorf("ssh %s: %w", addr, err)
		}
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh %s@%s: %w", user, addr, err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		c.Close()
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	return &Client{c: ssh.NewClient(c, chans, reqs), t: t, HostKey: hostKey, Addr: addr, username: user}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

// ExitError is a command that ran and exited non-zero.
type ExitError struct {
	Command string
	Status  int
	Stderr  string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%q exited with status %d: %s", e.Command, e.Status, strings.TrimSpace(e.Stderr))
}

// Run runs cmd and returns its stdout; a non-zero exit is an *ExitError. The command, its output and status are
// added to the transcript. ctx ending closes the session.
func (c *Client) Run(ctx context.Context, cmd string) (string, error) {
	e := Entry{Command: cmd, Started: time.Now().UTC()}
	defer func() {
		e.DurationMS = time.Since(e.Started).Milliseconds()
		c.t.add(e)
	}()
	s, err := c.c.NewSession()
	if err != nil {
		e.Error = err.Error()
		return "", fmt.Errorf("ssh %s: new session: %w", c.Addr, err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		if cerr := s.Close(); cerr != nil && !errors.Is(cerr, io.EOF) {
			err = fmt.Errorf("%w (closing the session: %v)", ctx.Err(), cerr)
		} else {
			err = ctx.Err()
		}
	}
	e.Stdout, e.Stderr = stdout.String(), stderr.String()
	var xe *ssh.ExitError
	switch {
	case err == nil:
		return e.Stdout, nil
	case errors.As(err, &xe):
		e.ExitStatus = xe.ExitStatus()
		return e.Stdout, &ExitError{Command: cmd, Status: xe.ExitStatus(), Stderr: e.Stderr}
	default:
		e.Error, e.ExitStatus = err.Error(), -1
		return e.Stdout, fmt.Errorf("ssh %s: %q: %w", c.Addr, cmd, err)
	}
}

// WriteFile writes content to path in the guest through the session's standard input (never on a command line),
// with mode, as the login user (prefix "sudo -n " with sudo). The transcript records the path and the size only:
// use it for secrets such as registry credentials.
func (c *Client) WriteFile(ctx context.Context, path string, content []byte, mode os.FileMode, sudo bool) error {
	cmd := fmt.Sprintf("sh -c 'umask 077 && mkdir -p \"$(dirname %[1]s)\" && cat > %[1]s && chmod %#o %[1]s'", path, mode.Perm())
	if sudo {
		cmd = "sudo -n " + cmd
	}
	e := Entry{Command: fmt.Sprintf("write %s (%d bytes, content not recorded)", path, len(content)), Started: time.Now().UTC()}
	defer func() {
		e.DurationMS = time.Since(e.Started).Milliseconds()
		c.t.add(e)
	}()
	s, err := c.c.NewSession()
	if err != nil {
		e.Error = err.Error()
		return fmt.Errorf("ssh %s: new session: %w", c.Addr, err)
	}
	defer s.Close()
	var stderr bytes.Buffer
	s.Stdin, s.Stderr = bytes.NewReader(content), &stderr
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	e.Stderr = stderr.String()
	if err != nil {
		e.Error, e.ExitStatus = err.Error(), -1
		return fmt.Errorf("writing %s in the guest: %w: %s", path, err, strings.TrimSpace(e.Stderr))
	}
	return nil
}

// Retry dials until it succeeds or ctx ends (a booting guest refuses or resets connections for a while).
func Retry(ctx context.Context, addr, user string, key Key, t *Transcript, interval time.Duration) (*Client, error) {
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, 15*time.Second)
		c, err := Dial(attempt, addr, user, key, t)
		cancel()
		if err == nil {
			return c, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}
