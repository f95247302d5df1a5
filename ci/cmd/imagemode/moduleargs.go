package main

//go:generate go run ./internal/modulespec/gen ../../../dagger moduleargs_gen.go

import "fmt"

// moduleArg is one argument of the Dagger module, as go generate read it from dagger/*.go.
type moduleArg struct{ help, def string }

// mhelp is the help of a flag the CLI shares with the module, from the module's doc comment; extra is appended
// (what differs on the host, e.g. "a file"). A name the module does not have is a programming error the tests catch.
func mhelp(name string, extra ...string) string {
	a, ok := moduleArgs[name]
	if !ok {
		panic(fmt.Sprintf("imagemode: the module has no argument %q", name))
	}
	h := a.help
	for _, e := range extra {
		h += " " + e
	}
	return h
}

// mdefault is the module's +default of a flag ("" when it has none).
func mdefault(name string) string { return moduleArgs[name].def }
