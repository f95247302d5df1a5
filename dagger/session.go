package main

import (
	"context"
	"fmt"
	"os"

	lib "dagger.io/dagger"

	"dagger/imagemode/internal/dagger"
)

// session joins the caller's engine session with the dagger.io/dagger library ci/engine is written against, and
// converts the module's objects to it by ID.
type session struct{ c *lib.Client }

func (m *Imagemode) session(ctx context.Context) (*session, error) {
	c, err := lib.Connect(ctx, lib.WithLogOutput(os.Stderr))
	if err != nil {
		return nil, fail(fmt.Errorf("connecting to the engine session: %w", err))
	}
	return &session{c: c}, nil
}

func (s *session) close() {
	if err := s.c.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "imagemode: closing the engine session: %v\n", err)
	}
}

func (s *session) dir(ctx context.Context, d *dagger.Directory) (*lib.Directory, error) {
	if d == nil {
		return nil, fmt.Errorf("no containerfiles directory")
	}
	id, err := d.ID(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading a directory id: %w", err)
	}
	return s.c.LoadDirectoryFromID(lib.DirectoryID(id)), nil
}

func (s *session) secret(ctx context.Context, x *dagger.Secret) (*lib.Secret, error) {
	if x == nil {
		return nil, nil
	}
	id, err := x.ID(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading a secret id: %w", err)
	}
	return s.c.LoadSecretFromID(lib.SecretID(id)), nil
}

func (s *session) file(ctx context.Context, f *dagger.File) (*lib.File, error) {
	if f == nil {
		return nil, nil
	}
	id, err := f.ID(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading a file id: %w", err)
	}
	return s.c.LoadFileFromID(lib.FileID(id)), nil
}

func (s *session) git(ctx context.Context, g *dagger.GitRepository) (*lib.GitRepository, error) {
	if g == nil {
		return nil, nil
	}
	id, err := g.ID(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading a git repository id: %w", err)
	}
	return s.c.LoadGitRepositoryFromID(lib.GitRepositoryID(id)), nil
}
