//go:build typecheck

package main

import "dagger/imagemode/internal/dagger"

// dag is the module's client; the engine's generated dagger.gen.go declares it. This declaration exists only for
// `go vet -tags typecheck`.
var dag *dagger.Client
