package layers

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// BaseImageArg is the build argument through which every layer receives the image it is built FROM: the profile's
// base image (pinned by digest) for the root, the parent's pushed digest for every other layer.
const BaseImageArg = "BASE_IMAGE"

// Rule names the static checks; they appear in findings so that users can look them up in the README.
const (
	RuleParse     = "parse"
	RuleFrom      = "from-base-image"
	RuleBaseArg   = "base-image-arg"
	RuleLintLast  = "lint-last"
	RuleVarTarget = "no-var-destination"
)

// Finding is one static-check failure in a Containerfile.
type Finding struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Rule string `json:"rule"`
	Msg  string `json:"message"`
}

func (f Finding) Error() string {
	if f.Line > 0 {
		return fmt.Sprintf("%s:%d: %s [%s]", f.File, f.Line, f.Msg, f.Rule)
	}
	return fmt.Sprintf("%s: %s [%s]", f.File, f.Msg, f.Rule)
}

// LintError carries every finding of a lint run.
type LintError struct{ Findings []Finding }

func (e *LintError) Error() string {
	lines := make([]string, len(e.Findings))
	for i, f := range e.Findings {
		lines[i] = f.Error()
	}
	return fmt.Sprintf("%d lint finding(s):\n%s", len(e.Findings), strings.Join(lines, "\n"))
}

// Lint runs the static checks over every layer's Containerfile. dir is the graph's directory inside fsys and
// display the prefix used for file names in findings. It returns a *LintError when anything is found.
//
// The checks: the final stage is FROM ${BASE_IMAGE} with ARG BASE_IMAGE declared before it (so the pipeline can pin
// every parent by digest); the last instruction is RUN bootc container lint; no COPY, ADD, WORKDIR or VOLUME
// destination lies under /var (bootc treats /var as machine state: it is not updated by image upgrades). RUN steps
// are judged by bootc container lint itself, at build time.
func Lint(fsys fs.FS, dir, display string, g *Graph) error {
	var all []Finding
	for _, l := range g.Layers() {
		rel := l.ContainerfilePath()
		data, err := fs.ReadFile(fsys, path.Join(dir, rel))
		if err != nil {
			return fmt.Errorf("reading %q: %w", path.Join(display, rel), err)
		}
		all = append(all, LintContainerfile(path.Join(display, rel), data)...)
	}
	if len(all) > 0 {
		return &LintError{Findings: all}
	}
	return nil
}

// Check loads the graph in dir (a folder of fsys holding GraphFile) and lints every Containerfile. display is how
// the folder is named in errors (usually what the user passed with --dir).
func Check(fsys fs.FS, dir, display string) error {
	g, err := Open(fsys, dir, display)
	if err != nil {
		return err
	}
	return Lint(fsys, dir, display, g)
}

// Open loads and validates the graph in dir without linting the Containerfiles.
func Open(fsys fs.FS, dir, display string) (*Graph, error) {
	return LoadNamed(fsys, path.Join(dir, GraphFile), path.Join(display, GraphFile))
}

// LintContainerfile checks one Containerfile; file is the name used in findings.
func LintContainerfile(file string, data []byte) []Finding {
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return []Finding{{File: file, Line: lineOf(err), Rule: RuleParse, Msg: err.Error()}}
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return []Finding{{File: file, Line: lineOf(err), Rule: RuleParse, Msg: err.Error()}}
	}
	if len(stages) == 0 {
		return []Finding{{File: file, Line: 1, Rule: RuleParse, Msg: "no FROM instruction"}}
	}
	var out []Finding
	final := stages[len(stages)-1]
	fromLine := firstLine(final.Location)

	if !isBaseImageRef(final.BaseName) {
		out = append(out, Finding{File: file, Line: fromLine, Rule: RuleFrom,
			Msg: fmt.Sprintf("the final stage must be FROM ${%s} (found FROM %s): the pipeline passes the parent's digest through that argument", BaseImageArg, final.BaseName)})
	} else if !declaresArg(metaArgs, BaseImageArg) {
		out = append(out, Finding{File: file, Line: fromLine, Rule: RuleBaseArg,
			Msg: fmt.Sprintf("FROM ${%s} needs \"ARG %s\" before the first FROM", BaseImageArg, BaseImageArg)})
	}

	for _, st := range stages {
		for _, c := range st.Commands {
			out = append(out, checkVarDestination(file, c)...)
		}
	}

	if len(final.Commands) == 0 {
		out = append(out, Finding{File: file, Line: fromLine, Rule: RuleLintLast, Msg: "the image must end with RUN bootc container lint"})
	} else {
		last := final.Commands[len(final.Commands)-1]
		if !isBootcLint(last) {
			out = append(out, Finding{File: file, Line: firstLine(last.Location()), Rule: RuleLintLast,
				Msg: fmt.Sprintf("the last instruction must be RUN bootc container lint (found %s)", shorten(commandText(last)))})
		}
	}
	return out
}

func isBaseImageRef(s string) bool {
	return s == "${"+BaseImageArg+"}" || s == "$"+BaseImageArg
}

func declaresArg(args []instructions.ArgCommand, name string) bool {
	for _, a := range args {
		for _, kv := range a.Args {
			if kv.Key == name {
				return true
			}
		}
	}
	return false
}

func isBootcLint(c instructions.Command) bool {
	run, ok := c.(*instructions.RunCommand)
	if !ok {
		return false
	}
	fields := strings.Fields(strings.Join(run.CmdLine, " "))
	return len(fields) >= 3 && (fields[0] == "bootc" || fields[0] == "/usr/bin/bootc") && fields[1] == "container" && fields[2] == "lint"
}

func checkVarDestination(file string, c instructions.Command) []Finding {
	var dests []string
	switch c := c.(type) {
	case *instructions.CopyCommand:
		dests = []string{c.DestPath}
	case *instructions.AddCommand:
		dests = []string{c.DestPath}
	case *instructions.WorkdirCommand:
		dests = []string{c.Path}
	case *instructions.VolumeCommand:
		dests = c.Volumes
	}
	var out []Finding
	for _, d := range dests {
		if underVar(d) {
			out = append(out, Finding{File: file, Line: firstLine(c.Location()), Rule: RuleVarTarget,
				Msg: fmt.Sprintf("%s writes to %s: /var is machine state that bootc never updates; ship the files under /usr and create /var paths with tmpfiles.d", strings.ToUpper(c.Name()), d)})
		}
	}
	return out
}

func underVar(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	c := path.Clean(p)
	return c == "/var" || strings.HasPrefix(c, "/var/")
}

func commandText(c instructions.Command) string {
	if s, ok := c.(fmt.Stringer); ok {
		return s.String()
	}
	return c.Name()
}

func shorten(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

func firstLine(r []parser.Range) int {
	if len(r) == 0 {
		return 0
	}
	return r[0].Start.Line
}

// lineOf extracts the line from a BuildKit parse error when it carries one.
func lineOf(err error) int {
	var loc interface{ Location() []parser.Range }
	if errors.As(err, &loc) {
		return firstLine(loc.Location())
	}
	return 0
}

// CopiesFrom reports whether the final stage of a Containerfile has a COPY or ADD whose source is the context
// folder src (e.g. "imagemode-trust"), as the root layer must for the pipeline's generated files to land.
func CopiesFrom(data []byte, src string) bool {
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return false
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil || len(stages) == 0 {
		return false
	}
	want := strings.Trim(path.Clean(src), "/")
	for _, c := range stages[len(stages)-1].Commands {
		var sources []string
		switch c := c.(type) {
		case *instructions.CopyCommand:
			if c.From != "" {
				continue
			}
			sources = c.SourcePaths
		case *instructions.AddCommand:
			sources = c.SourcePaths
		}
		for _, s := range sources {
			if strings.Trim(path.Clean(s), "/") == want {
				return true
			}
		}
	}
	return false
}
