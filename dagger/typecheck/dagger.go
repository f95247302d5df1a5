//go:build typecheck

// Package dagger stands in for the module's generated client package (dagger/imagemode/internal/dagger) so that the
// shims type-check without an engine: `go vet -tags typecheck ./...` in dagger/. It aliases the few generated names
// the shims use to dagger.io/dagger, the library the generated code is made from. internal/dagger is a symlink to
// this folder in a fresh checkout; the engine's generated code takes its place when the module is loaded (this file
// is excluded without the typecheck tag).
package dagger

import lib "dagger.io/dagger"

type (
	Client        = lib.Client
	Container     = lib.Container
	Directory     = lib.Directory
	File          = lib.File
	Secret        = lib.Secret
	GitRepository = lib.GitRepository
	GitRef        = lib.GitRef
	Service       = lib.Service

	BuildArg                     = lib.BuildArg
	ContainerOpts                = lib.ContainerOpts
	ContainerWithExecOpts        = lib.ContainerWithExecOpts
	DirectoryDockerBuildOpts     = lib.DirectoryDockerBuildOpts
	DirectoryFilterOpts          = lib.DirectoryFilterOpts
	DirectoryWithNewFileOpts     = lib.DirectoryWithNewFileOpts
	ContainerWithMountedFileOpts = lib.ContainerWithMountedFileOpts
	ReturnType                   = lib.ReturnType
	ContainerAsServiceOpts       = lib.ContainerAsServiceOpts
	ServiceEndpointOpts          = lib.ServiceEndpointOpts
)

// ReturnTypeAny is the generated constant of the same name.
const ReturnTypeAny = lib.ReturnTypeAny
