// Package guesttest is an in-process SSH server for unit tests of code that drives guests: it answers "exec"
// requests from a handler.
package guesttest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Handler answers one command: stdout, stderr and the exit status.
type Handler func(cmd string) (stdout, stderr string, status int)

// Server is a running test SSH server.
type Server struct {
	Addr     string
	mu       sync.Mutex
	commands []string
	stdin    []byte
}

// Stdin returns what the last command received on its standard input.
func (s *Server) Stdin() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.stdin)
}

// Commands returns the commands received so far.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// Start serves on 127.0.0.1 for the test's lifetime, accepting only authorized (an SSH public key).
func Start(t testing.TB, authorized ssh.PublicKey, h Handler) *Server {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(authorized.Marshal()) {
			return &ssh.Permissions{}, nil
		}
		return nil, errUnauthorized
	}}
	cfg.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: l.Addr().String()}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(conn, cfg, h)
		}
	}()
	return s
}

type unauthorized struct{}

func (unauthorized) Error() string { return "unauthorized" }

var errUnauthorized = unauthorized{}

func (s *Server) serve(conn net.Conn, cfg *ssh.ServerConfig, h Handler) {
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		conn.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for req := range requests {
				if req.Type != "exec" || len(req.Payload) < 4 {
					req.Reply(false, nil)
					continue
				}
				n := binary.BigEndian.Uint32(req.Payload)
				cmd := string(req.Payload[4 : 4+n])
				req.Reply(true, nil)
				var in []byte
				if strings.Contains(cmd, "cat >") {
					var err error
					if in, err = io.ReadAll(ch); err != nil {
						return // the client went away: nothing to answer
					}
				}
				s.mu.Lock()
				s.commands = append(s.commands, cmd)
				if in != nil {
					s.stdin = in
				}
				s.mu.Unlock()
				out, errOut, status := h(cmd)
				ch.Write([]byte(out))
				ch.Stderr().Write([]byte(errOut))
				st := make([]byte, 4)
				binary.BigEndian.PutUint32(st, uint32(status))
				ch.SendRequest("exit-status", false, st)
				return
			}
		}()
	}
}
