// Package faultproxy is an HTTP reverse proxy that fails a seeded, reproducible share of requests — with 500
// answers or by resetting the connection — to test that registry clients retry and that interrupted operations can
// be resumed.
package faultproxy

import (
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// Proxy forwards to a registry and injects faults.
type Proxy struct {
	srv    *httptest.Server
	mu     sync.Mutex
	rng    *rand.Rand
	rate   float64
	total  atomic.Int64
	failed atomic.Int64
	resets atomic.Int64
	// OnlyPaths, when set, restricts faults to request paths containing one of these substrings.
	OnlyPaths []string

	blobUploads  atomic.Int64
	blobBytes    atomic.Int64
	manifestPuts atomic.Int64
}

// Start proxies to target ("host:port") and fails rate (0..1) of the requests, drawn from a generator seeded
// with seed.
func Start(target string, rate float64, seed int64) *Proxy {
	p := &Proxy{rng: rand.New(rand.NewSource(seed)), rate: rate}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.fault(r) {
			p.failed.Add(1)
			if p.coin() {
				p.resets.Add(1)
				if hj, ok := w.(http.Hijacker); ok {
					if conn, _, err := hj.Hijack(); err == nil {
						if tc, ok := conn.(*net.TCPConn); ok {
							// SetLinger(0) makes Close send a RST: the client sees "connection reset by peer".
							if err := tc.SetLinger(0); err != nil {
								conn.Close()
								return
							}
						}
						conn.Close()
						return
					}
				}
			}
			http.Error(w, "injected fault", http.StatusInternalServerError)
			return
		}
		p.count(r)
		rp.ServeHTTP(w, r)
	}))
	return p
}

func (p *Proxy) fault(r *http.Request) bool {
	if len(p.OnlyPaths) > 0 {
		match := false
		for _, s := range p.OnlyPaths {
			if strings.Contains(r.URL.Path, s) {
				match = true
			}
		}
		if !match {
			return false
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rate <= 0 {
		return false
	}
	p.total.Add(1)
	return p.rng.Float64() < p.rate
}

func (p *Proxy) coin() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Intn(2) == 0
}

// count records uploads: a blob upload starts with a POST to /blobs/uploads/ without mount= (a cross-repository
// mount uploads nothing); its bytes come with PATCH or PUT.
func (p *Proxy) count(r *http.Request) {
	switch {
	case strings.Contains(r.URL.Path, "/blobs/uploads") && r.Method == http.MethodPost && r.URL.Query().Get("mount") == "":
		p.blobUploads.Add(1)
	case strings.Contains(r.URL.Path, "/blobs/uploads") && (r.Method == http.MethodPatch || r.Method == http.MethodPut):
		if r.ContentLength > 0 {
			p.blobBytes.Add(r.ContentLength)
		}
	case strings.Contains(r.URL.Path, "/manifests/") && r.Method == http.MethodPut:
		p.manifestPuts.Add(1)
	}
}

// Uploads returns the blob uploads started, the blob bytes sent and the manifests written so far.
func (p *Proxy) Uploads() (blobs, bytes, manifests int64) {
	return p.blobUploads.Load(), p.blobBytes.Load(), p.manifestPuts.Load()
}

// SetRate changes the share of failed requests (0 turns faults off).
func (p *Proxy) SetRate(rate float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate = rate
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return strings.TrimPrefix(p.srv.URL, "http://") }

// Stats returns the requests seen while faults were on, how many failed, and how many of those by a reset.
func (p *Proxy) Stats() (total, failed, resets int64) {
	return p.total.Load(), p.failed.Load(), p.resets.Load()
}

// Close stops the proxy.
func (p *Proxy) Close() { p.srv.Close() }
