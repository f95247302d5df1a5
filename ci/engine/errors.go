package engine

import (
	"fmt"
	"net"
	"strings"
)

// flatError is an error message with nothing behind it to unwrap.
type flatError struct{ msg string }

func (e flatError) Error() string { return e.msg }

// Flatten returns an error with err's whole message and no chain. The Go SDK's module runtime reports the engine
// error it finds by unwrapping a single chain of wrapped errors, and would show only the engine's raw message
// ("failed to push ...") instead of the project's ("building and publishing layer ...") and the partial report.
// Every module function returns its error through Flatten.
func Flatten(err error) error {
	if err == nil {
		return nil
	}
	return flatError{msg: err.Error()}
}

// CheckReachable refuses references the module cannot use: module code runs in a container of the engine, where
// 127.0.0.1 (or localhost) is that container, while the engine pulls and pushes from its own network namespace; a
// registry on a loopback address would be reached by one and not the other.
func CheckReachable(flag, ref string) error {
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
		return fmt.Errorf("%s %q: %s is a loopback address; the module's code runs in a container of the Dagger engine, "+
			"where it is that container, not your machine. Use an address of the registry that the engine and its "+
			"containers both reach: a host name, or the host's address on the engine's network (e.g. $ENGINE_REGISTRY "+
			"with the development kit)", flag, ref, host)
	}
	return nil
}
