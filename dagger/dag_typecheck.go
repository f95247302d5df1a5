//go:build typecheck

package main

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"dagger/imagemode/internal/dagger"
)

// dag is the module's client and Tracer its tracer; the engine's generated dagger.gen.go declares both. These
// declarations exist only for `go vet -tags typecheck` and `go test -tags typecheck`.
var dag *dagger.Client

func Tracer() trace.Tracer { return otel.Tracer("dagger.io/sdk.go") }
