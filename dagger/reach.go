package main

import (
	"fmt"
	"net"
	"strings"
)

// checkReachable refuses references the module cannot use: the CLI runs in a container of the engine, where
// 127.0.0.1 (or localhost) is that container, while the engine pulls and pushes from its own network namespace; a
// registry on a loopback address would be reached by one and not the other.
func checkReachable(flag, ref string) error {
	if ref == "" {
		return nil
	}
	host, _, _ := strings.Cut(ref, "/")
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return nil // a path on Docker Hub (library/debian), not a host
	}
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = strings.Trim(host, "[]")
	}
	ip := net.ParseIP(h)
	if h == "localhost" || strings.HasSuffix(h, ".localhost") || (ip != nil && ip.IsLoopback()) {
		return fmt.Errorf("%s %q: %s is a loopback address; the module's work runs in containers of the Dagger engine, "+
			"where it is that container, not your machine. Use an address of the registry that the engine and its "+
			"containers both reach: a host name, or the host's address on the engine's network (e.g. $ENGINE_REGISTRY "+
			"with the development kit)", flag, ref, host)
	}
	return nil
}
