// Package buildctx decides which files of a layer's folder form its build context. BuildKit (and so Dagger's
// DockerBuild) ignores .containerignore, so the pipeline filters the context itself, with one matcher, and hands the
// builder exactly the files it hashed.
package buildctx

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// IgnoreFiles are read, first found wins, from the context folder.
var IgnoreFiles = []string{".containerignore", ".dockerignore"}

// File is one entry of a build context.
type File struct {
	// Path is slash-separated and relative to the context folder.
	Path string
	// Mode carries the type (regular or symlink) and permission bits.
	Mode fs.FileMode
}

// List returns the files of the context folder dir inside fsys that a build may see, sorted by path. Directories are
// implied by the files they hold; empty directories are not part of a context. The Containerfile is always kept,
// even if an ignore file matches it, because the builder must read it.
func List(fsys fs.FS, dir, containerfile string) ([]File, error) {
	patterns, err := readIgnore(fsys, dir)
	if err != nil {
		return nil, err
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("%s: bad ignore pattern: %w", dir, err)
	}
	var out []File
	err = fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("reading build context %q: %w", p, err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")
		if rel == "" {
			return nil
		}
		skip, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return fmt.Errorf("matching %q against the ignore file of %q: %w", rel, dir, err)
		}
		if skip && rel != containerfile {
			if d.IsDir() && !pm.Exclusions() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("reading build context %q: %w", p, err)
		}
		if !info.Mode().IsRegular() && info.Mode()&fs.ModeSymlink == 0 {
			return fmt.Errorf("build context %q: %s is neither a file nor a symlink", dir, rel)
		}
		out = append(out, File{Path: rel, Mode: info.Mode()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func readIgnore(fsys fs.FS, dir string) ([]string, error) {
	for _, name := range IgnoreFiles {
		data, err := fs.ReadFile(fsys, path.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %q: %w", path.Join(dir, name), err)
		}
		patterns, err := ignorefile.ReadAll(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("parsing %q: %w", path.Join(dir, name), err)
		}
		return patterns, nil
	}
	return nil, nil
}

// Paths returns the paths of files.
func Paths(files []File) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Path
	}
	return out
}

// Materialize writes exactly files (from the context folder dir of fsys) and the extra generated files into dest,
// a directory on disk, keeping permission bits and symlinks.
func Materialize(fsys fs.FS, dir string, files []File, extra map[string][]byte, dest string) error {
	for _, f := range files {
		target := filepath.Join(dest, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("creating %q: %w", filepath.Dir(target), err)
		}
		src := path.Join(dir, f.Path)
		if f.Mode&fs.ModeSymlink != 0 {
			link, err := fs.ReadLink(fsys, src)
			if err != nil {
				return fmt.Errorf("reading symlink %q: %w", src, err)
			}
			if err := os.Symlink(link, target); err != nil {
				return fmt.Errorf("creating symlink %q: %w", target, err)
			}
			continue
		}
		data, err := fs.ReadFile(fsys, src)
		if err != nil {
			return fmt.Errorf("reading %q: %w", src, err)
		}
		if err := os.WriteFile(target, data, f.Mode.Perm()|0o200); err != nil {
			return fmt.Errorf("writing %q: %w", target, err)
		}
		if err := os.Chmod(target, f.Mode.Perm()); err != nil {
			return fmt.Errorf("setting the mode of %q: %w", target, err)
		}
	}
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if path.IsAbs(n) || strings.HasPrefix(path.Clean(n), "..") {
			return fmt.Errorf("generated file %q must stay inside the build context", n)
		}
		target := filepath.Join(dest, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("creating %q: %w", filepath.Dir(target), err)
		}
		if err := os.WriteFile(target, extra[n], 0o644); err != nil {
			return fmt.Errorf("writing %q: %w", target, err)
		}
	}
	return nil
}
