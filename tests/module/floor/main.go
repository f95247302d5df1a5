// Floor is the smallest Go module of the project's shape: a constructor with an argument and a function that
// returns an object with a field. The module benchmarks (tests/module/bench_test.go) load and call it beside the
// project's module, so that what the engine itself costs per load and per call is printed with the figures.
package main

// Floor holds the constructor's argument.
type Floor struct {
	Registry string
}

func New(
	// Any string: it is only kept.
	registry string,
) *Floor {
	return &Floor{Registry: registry}
}

// Out is what Noop returns.
type Out struct {
	// A constant.
	Report string
}

// Noop returns an object at once.
// +cache="never"
func (m *Floor) Noop() *Out { return &Out{Report: "{}"} }
