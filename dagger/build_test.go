//go:build typecheck

package main

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A step that never reached the server (nothing listened yet, as when the service's name briefly did not resolve)
// is sent again, and arrives once; an answer that is an error is not sent again.
func TestPostRetriesOnlyWhatNeverArrived(t *testing.T) {
	addr := freeAddr(t)
	var posts atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("POST /step", func(w http.ResponseWriter, r *http.Request) {
		if posts.Add(1) > 1 {
			http.Error(w, "imagemode build-all: that run is over", http.StatusUnprocessableEntity)
			return
		}
		w.Write([]byte(`{"version":1,"runId":"r","builds":[{"layer":"soe","target":"reg/soe:t","containerfile":"soe/Containerfile"}]}`))
	})
	srv := &http.Server{Handler: mux}
	t.Cleanup(func() { srv.Close() })
	go func() {
		time.Sleep(400 * time.Millisecond) // the first attempts find nothing listening
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		srv.Serve(l)
	}()
	s := &stepService{url: "http://" + addr}
	next, err := s.post(t.Context(), nil)
	if err != nil {
		t.Fatalf("the step was not sent again until the server listened: %v", err)
	}
	if len(next.Builds) != 1 || next.Builds[0].Layer != "soe" || posts.Load() != 1 {
		t.Fatalf("got %+v after %d posts", next, posts.Load())
	}
	if _, err := s.post(t.Context(), []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "that run is over") || posts.Load() != 2 {
		t.Fatalf("an error answer: %v after %d posts (want the CLI's message, no second post)", err, posts.Load())
	}
}

// A server that never listens is given up on, with the cause.
func TestPostGivesUpOnAServerThatNeverListens(t *testing.T) {
	addr := freeAddr(t)
	s := &stepService{url: "http://" + addr}
	if _, err := s.post(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("got %v", err)
	}
}

// freeAddr is a 127.0.0.1 address nothing listens on (it was free a moment ago).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
