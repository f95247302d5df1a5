// Package layers reads and validates the layer graph: which images exist, which image each one is built FROM, and
// where its Containerfile and build context live. The graph is declared once, in a YAML file next to the
// Containerfiles (layers.yaml), and everything else in the pipeline asks this package for the build order.
package layers

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// GraphFile is the name of the graph file inside a containerfiles directory.
const GraphFile = "layers.yaml"

// DefaultContainerfile is the Containerfile name used when a layer does not name one.
const DefaultContainerfile = "Containerfile"

// Layer is one image of the family.
type Layer struct {
	// Name is the image name; it is also the repository name under the run's registry.
	Name string `yaml:"name" json:"name"`
	// Parent is the layer this one is built FROM; empty for the root, which is built FROM the profile's base image.
	Parent string `yaml:"parent,omitempty" json:"parent,omitempty"`
	// Context is the build context folder, relative to the graph file's directory (default: the layer's name).
	Context string `yaml:"context,omitempty" json:"context"`
	// Containerfile is the Containerfile path relative to Context (default: Containerfile).
	Containerfile string `yaml:"containerfile,omitempty" json:"containerfile"`
	// Description is free text shown by plan.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Smoke declares what the VM smoke test checks for this layer.
	Smoke Smoke `yaml:"smoke,omitempty" json:"smoke"`

	line int
}

// Smoke lists the probes of a layer's smoke test. Every layer is at least checked for reaching multi-user.
type Smoke struct {
	// HTTP probes GET the path on port 80 and expect the status and a substring of the body.
	HTTP []HTTPProbe `yaml:"http,omitempty" json:"http,omitempty"`
	// MariaDB, when true, connects to port 3306, authenticates and runs a write/read round trip.
	MariaDB bool `yaml:"mariadb,omitempty" json:"mariadb,omitempty"`
}

// HTTPProbe is one expected HTTP answer.
type HTTPProbe struct {
	Path   string `yaml:"path" json:"path"`
	Status int    `yaml:"status,omitempty" json:"status,omitempty"`
	Expect string `yaml:"expect,omitempty" json:"expect,omitempty"`
}

// ContainerfilePath is the Containerfile's path relative to the graph's directory.
func (l Layer) ContainerfilePath() string { return path.Join(l.Context, l.Containerfile) }

// Line is the line of the graph file on which the layer is declared.
func (l Layer) Line() int { return l.line }

// Graph is a validated layer graph.
type Graph struct {
	// File is the graph file's path as it was given (used in every error message).
	File   string
	layers []Layer
	byName map[string]int
	levels [][]string
}

// Layers returns the layers in declaration order.
func (g *Graph) Layers() []Layer { return append([]Layer(nil), g.layers...) }

// Layer returns the named layer.
func (g *Graph) Layer(name string) (Layer, bool) {
	i, ok := g.byName[name]
	if !ok {
		return Layer{}, false
	}
	return g.layers[i], true
}

// Levels returns the build levels: level 0 holds the roots, level n the layers whose parent is in level n-1.
// Names inside a level are sorted so that the plan is stable.
func (g *Graph) Levels() [][]string {
	out := make([][]string, len(g.levels))
	for i, l := range g.levels {
		out[i] = append([]string(nil), l...)
	}
	return out
}

// Ancestors returns the chain from the root down to (and including) the named layer.
func (g *Graph) Ancestors(name string) ([]string, error) {
	l, ok := g.Layer(name)
	if !ok {
		return nil, fmt.Errorf("%s: no layer named %q (known: %s)", g.File, name, strings.Join(g.names(), ", "))
	}
	chain := []string{l.Name}
	for l.Parent != "" {
		l = g.layers[g.byName[l.Parent]] // validated: every parent exists
		chain = append([]string{l.Name}, chain...)
	}
	return chain, nil
}

// Descendants returns the named layer and every layer built on it, directly or not, sorted by name.
func (g *Graph) Descendants(name string) []string {
	in := map[string]bool{name: true}
	for _, level := range g.levels {
		for _, n := range level {
			l, _ := g.Layer(n)
			if l.Parent != "" && in[l.Parent] {
				in[n] = true
			}
		}
	}
	out := make([]string, 0, len(in))
	for n := range in {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Subgraph returns a graph restricted to the named layers, which must be closed under parents.
func (g *Graph) Subgraph(names []string) (*Graph, error) {
	keep := map[string]bool{}
	for _, n := range names {
		if _, ok := g.Layer(n); !ok {
			return nil, fmt.Errorf("%s: no layer named %q (known: %s)", g.File, n, strings.Join(g.names(), ", "))
		}
		keep[n] = true
	}
	var ls []Layer
	for _, l := range g.layers {
		if !keep[l.Name] {
			continue
		}
		if l.Parent != "" && !keep[l.Parent] {
			return nil, fmt.Errorf("%s: layer %q needs its parent %q in the selection", g.File, l.Name, l.Parent)
		}
		ls = append(ls, l)
	}
	return newGraph(g.File, ls)
}

func (g *Graph) names() []string {
	out := make([]string, 0, len(g.layers))
	for _, l := range g.layers {
		out = append(out, l.Name)
	}
	sort.Strings(out)
	return out
}

// Error is a problem found in a graph file or a Containerfile, located by file and line.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// nameRE is what a layer name may look like: it becomes a repository path component and part of tags.
var nameRE = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`)

// yamlLineRE strips yaml.v3's own "line N:" prefixes: the layer's line is reported instead.
var yamlLineRE = regexp.MustCompile(`\s*line \d+: `)

type graphDoc struct {
	Layers yaml.Node `yaml:"layers"`
}

// Load reads the graph file at file (a path inside fsys, usually GraphFile), validates it and checks that every
// layer's Containerfile exists. Every error names the graph file and, where it applies, the line.
func Load(fsys fs.FS, file string) (*Graph, error) {
	return LoadNamed(fsys, file, file)
}

// LoadNamed is Load with the name used in error messages (e.g. the directory the user passed with --dir).
func LoadNamed(fsys fs.FS, file, display string) (*Graph, error) {
	data, err := fs.ReadFile(fsys, file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &Error{File: display, Msg: "graph file not found: a containerfiles directory declares its layers in " + GraphFile}
		}
		return nil, fmt.Errorf("reading %q: %w", display, err)
	}
	layers, err := parse(data, display)
	if err != nil {
		return nil, err
	}
	g, err := newGraph(display, layers)
	if err != nil {
		return nil, err
	}
	dir := path.Dir(file)
	var errs []error
	for _, l := range g.layers {
		p := path.Join(dir, l.ContainerfilePath())
		st, err := fs.Stat(fsys, p)
		switch {
		case err != nil && errors.Is(err, fs.ErrNotExist):
			errs = append(errs, &Error{File: display, Line: l.line, Msg: fmt.Sprintf("layer %q: Containerfile %q does not exist", l.Name, l.ContainerfilePath())})
		case err != nil:
			errs = append(errs, fmt.Errorf("%s:%d: layer %q: reading %q: %w", display, l.line, l.Name, l.ContainerfilePath(), err))
		case st.IsDir():
			errs = append(errs, &Error{File: display, Line: l.line, Msg: fmt.Sprintf("layer %q: Containerfile %q is a directory", l.Name, l.ContainerfilePath())})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return g, nil
}

func parse(data []byte, file string) ([]Layer, error) {
	var doc graphDoc
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if doc.Layers.Kind == 0 {
		return nil, &Error{File: file, Msg: "no \"layers\" list"}
	}
	if doc.Layers.Kind != yaml.SequenceNode {
		return nil, &Error{File: file, Line: doc.Layers.Line, Msg: "\"layers\" must be a list"}
	}
	var layers []Layer
	var errs []error
	for _, n := range doc.Layers.Content {
		var l Layer
		if err := decodeStrict(n, &l); err != nil {
			errs = append(errs, &Error{File: file, Line: n.Line, Msg: err.Error()})
			continue
		}
		l.line = n.Line
		if l.Context == "" {
			l.Context = l.Name
		}
		if l.Containerfile == "" {
			l.Containerfile = DefaultContainerfile
		}
		layers = append(layers, l)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return layers, nil
}

// decodeStrict decodes a node refusing unknown fields (yaml.v3 does that only for whole documents).
func decodeStrict(n *yaml.Node, v *Layer) error {
	out, err := yaml.Marshal(n)
	if err != nil {
		return fmt.Errorf("re-encoding layer: %w", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(out)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
		msg = yamlLineRE.ReplaceAllString(msg, "")
		return errors.New(strings.TrimSpace(msg))
	}
	return nil
}

func newGraph(file string, layers []Layer) (*Graph, error) {
	g := &Graph{File: file, layers: layers, byName: map[string]int{}}
	var errs []error
	for i, l := range layers {
		switch {
		case l.Name == "":
			errs = append(errs, &Error{File: file, Line: l.line, Msg: "layer without a name"})
			continue
		case !nameRE.MatchString(l.Name):
			errs = append(errs, &Error{File: file, Line: l.line, Msg: fmt.Sprintf("layer name %q: use lowercase letters, digits and single . _ - between them", l.Name)})
		}
		if j, dup := g.byName[l.Name]; dup {
			errs = append(errs, &Error{File: file, Line: l.line, Msg: fmt.Sprintf("duplicate layer name %q (first declared on line %d)", l.Name, layers[j].line)})
			continue
		}
		if path.IsAbs(l.Context) || strings.HasPrefix(path.Clean(l.Context), "..") {
			errs = append(errs, &Error{File: file, Line: l.line, Msg: fmt.Sprintf("layer %q: context %q must be a folder inside the graph's directory", l.Name, l.Context)})
		}
		g.byName[l.Name] = i
	}
	for _, l := range layers {
		if l.Parent == "" {
			continue
		}
		if l.Parent == l.Name {
			errs = append(errs, &Error{File: file, Line: l.line, Msg: fmt.Sprintf("layer %q is its own parent", l.Name)})
			continue
		}
		if _, ok := g.byName[l.Parent]; !ok {
			errs = append(errs, &Error{File: file, Line: l.line, Msg: fmt.Sprintf("layer %q: unknown parent %q (known layers: %s)", l.Name, l.Parent, strings.Join(g.names(), ", "))})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(layers) == 0 {
		return nil, &Error{File: file, Msg: "the graph declares no layers"}
	}
	if err := g.computeLevels(); err != nil {
		return nil, err
	}
	return g, nil
}

// computeLevels assigns each layer its depth and reports cycles with the layers that form them.
func (g *Graph) computeLevels() error {
	depth := map[string]int{}
	var cycleErr error
	var visit func(name string, stack []string) int
	visit = func(name string, stack []string) int {
		if d, ok := depth[name]; ok {
			return d
		}
		for i, s := range stack {
			if s == name {
				cyc := append(append([]string(nil), stack[i:]...), name)
				l, _ := g.Layer(name)
				if cycleErr == nil {
					cycleErr = &Error{File: g.File, Line: l.line, Msg: "cycle in the layer graph: " + strings.Join(cyc, " -> ")}
				}
				return -1
			}
		}
		l, _ := g.Layer(name)
		d := 0
		if l.Parent != "" {
			pd := visit(l.Parent, append(stack, name))
			if pd < 0 {
				return -1
			}
			d = pd + 1
		}
		depth[name] = d
		return d
	}
	for _, l := range g.layers {
		visit(l.Name, nil)
		if cycleErr != nil {
			return cycleErr
		}
	}
	max := 0
	for _, d := range depth {
		if d > max {
			max = d
		}
	}
	g.levels = make([][]string, max+1)
	for n, d := range depth {
		g.levels[d] = append(g.levels[d], n)
	}
	for _, l := range g.levels {
		sort.Strings(l)
	}
	return nil
}
