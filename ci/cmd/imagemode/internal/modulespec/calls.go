package modulespec

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"sort"
	"strings"
)

// Param is one parameter of a module function.
type Param struct {
	// Bool parameters are flags without a value (--resolve); the others take one.
	Bool bool
	// Required parameters have neither +optional nor +default and are not pointers to engine objects passed by
	// default (+defaultPath).
	Required bool
}

// Func is a module function: its parameters and the module type it returns ("" for a scalar; "core" for an engine
// object such as a File or Container, whose own functions are Dagger's, not the module's).
type Func struct {
	Params  map[string]Param
	Returns string
}

// Type is an object type of the module (Imagemode, Run, Layer): its functions and its fields (by flag name).
type Type struct {
	Funcs  map[string]*Func
	Fields map[string]bool
}

// Module is the module's declaration as `dagger call` sees it: the constructor and the object types.
type Module struct {
	Constructor *Func
	Types       map[string]*Type
	// Main is the main object's type name.
	Main string
}

// ReadModule reads the object types, their exported fields and functions from the Go files of dir (dagger/).
func ReadModule(dir string) (*Module, error) {
	files, err := moduleFiles(dir)
	if err != nil {
		return nil, err
	}
	m := &Module{Types: map[string]*Type{}}
	typ := func(n string) *Type {
		if m.Types[n] == nil {
			m.Types[n] = &Type{Funcs: map[string]*Func{}, Fields: map[string]bool{}}
		}
		return m.Types[n]
	}
	fset := token.NewFileSet()
	var decls []*ast.FuncDecl
	var asts []*ast.File
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("reading the module: %w", err)
		}
		asts = append(asts, f)
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				for _, s := range d.Specs {
					ts, ok := s.(*ast.TypeSpec)
					if !ok || !ts.Name.IsExported() {
						continue
					}
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					t := typ(ts.Name.Name)
					for _, fl := range st.Fields.List {
						if private(fl.Doc) {
							continue
						}
						for _, n := range fl.Names {
							if n.IsExported() {
								t.Fields[Kebab(n.Name)] = true
							}
						}
					}
				}
			case *ast.FuncDecl:
				if d.Name.IsExported() {
					decls = append(decls, d)
				}
			}
		}
	}
	fileOf := func(d *ast.FuncDecl) *ast.File {
		for _, f := range asts {
			if f.Pos() <= d.Pos() && d.End() <= f.End() {
				return f
			}
		}
		return nil
	}
	for _, d := range decls {
		fn := &Func{Params: map[string]Param{}, Returns: returns(d, m.Types)}
		for _, p := range d.Type.Params.List {
			_, isBool := p.Type.(*ast.Ident)
			isBool = isBool && p.Type.(*ast.Ident).Name == "bool"
			optional := pragmas(fset, fileOf(d), p)
			for _, n := range p.Names {
				if n.Name == "ctx" {
					continue
				}
				fn.Params[Kebab(n.Name)] = Param{Bool: isBool, Required: !optional}
			}
		}
		switch {
		case d.Recv == nil && d.Name.Name == "New":
			m.Constructor, m.Main = fn, fn.Returns
		case d.Recv != nil:
			if star, ok := d.Recv.List[0].Type.(*ast.StarExpr); ok {
				if id, ok := star.X.(*ast.Ident); ok {
					typ(id.Name).Funcs[Kebab(d.Name.Name)] = fn
				}
			}
		}
	}
	if m.Constructor == nil {
		return nil, fmt.Errorf("reading the module in %s: no constructor New", dir)
	}
	return m, nil
}

// private reports whether a field's doc comment carries +private.
func private(doc *ast.CommentGroup) bool {
	if doc == nil {
		return false
	}
	for _, c := range doc.List {
		if strings.TrimSpace(strings.TrimPrefix(c.Text, "//")) == "+private" {
			return true
		}
	}
	return false
}

// pragmas reports whether the parameter is optional: +optional, +default or +defaultPath above it.
func pragmas(fset *token.FileSet, f *ast.File, p *ast.Field) bool {
	if f == nil {
		return false
	}
	line := fset.Position(p.Pos()).Line
	for _, g := range f.Comments {
		if fset.Position(g.End()).Line != line-1 {
			continue
		}
		for _, c := range g.List {
			t := strings.TrimSpace(strings.TrimPrefix(c.Text, "//"))
			if t == "+optional" || strings.HasPrefix(t, "+default") {
				return true
			}
		}
	}
	return false
}

// returns names the module type a function returns, "core" for an engine object, "" for a scalar or list.
func returns(d *ast.FuncDecl, types map[string]*Type) string {
	if d.Type.Results == nil || len(d.Type.Results.List) == 0 {
		return ""
	}
	switch t := d.Type.Results.List[0].Type.(type) {
	case *ast.StarExpr:
		switch x := t.X.(type) {
		case *ast.Ident:
			return x.Name
		case *ast.SelectorExpr:
			return "core"
		}
	case *ast.ArrayType:
		if star, ok := t.Elt.(*ast.StarExpr); ok {
			if id, ok := star.X.(*ast.Ident); ok {
				return "[]" + id.Name
			}
		}
	}
	return ""
}

// Check checks one `dagger call` command line against the module: constructor arguments, then functions chained
// on what each returns, each with arguments it declares and its required ones given, ending on a scalar, a field,
// a list, an object (dagger call prints its fields) or an engine object (whose own functions, such as export, are
// Dagger's and not checked). A token "…", or a placeholder such as <function> or [ARGS], stops the check
// (documentation elides the rest there).
func (m *Module) Check(line string) error {
	words, err := split(line)
	if err != nil {
		return err
	}
	if len(words) < 2 || words[0] != "dagger" || words[1] != "call" {
		return fmt.Errorf("not a dagger call: %q", line)
	}
	words = words[2:]
	for j, w := range words {
		if strings.HasPrefix(w, "<") || strings.HasPrefix(w, "[") {
			words[j] = "…"
		}
	}
	i := 0
	elided := false
	// args consumes the --flags of fn at words[i:]; name is what the error messages call it.
	args := func(name string, fn *Func) error {
		given := map[string]bool{}
		for i < len(words) && (strings.HasPrefix(words[i], "-") || words[i] == Expr) {
			if words[i] == Expr {
				i++ // a workflow expression where flags go: it may stand for flags or for nothing
				continue
			}
			if words[i] == "…" {
				elided = true
				return nil
			}
			flag, value, hasValue := strings.Cut(strings.TrimLeft(words[i], "-"), "=")
			i++
			if flag == "help" || flag == "h" {
				continue
			}
			p, ok := fn.Params[flag]
			if !ok {
				return fmt.Errorf("%s has no argument --%s", name, flag)
			}
			given[flag] = true
			if !p.Bool && !hasValue {
				if i >= len(words) {
					return fmt.Errorf("%s --%s: no value", name, flag)
				}
				value = words[i]
				i++
			}
			if value == "…" {
				elided = true
				return nil
			}
		}
		if i < len(words) && words[i] == "…" {
			elided = true
			return nil
		}
		var missing []string
		for n, p := range fn.Params {
			if p.Required && !given[n] {
				missing = append(missing, "--"+n)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			return fmt.Errorf("%s: required %s not given", name, strings.Join(missing, ", "))
		}
		return nil
	}
	if err := args("the constructor", m.Constructor); err != nil || elided {
		return err
	}
	cur := m.Main
	if i >= len(words) {
		if strings.Contains(line, "--help") {
			return nil
		}
		return fmt.Errorf("no function called")
	}
	for i < len(words) {
		w := words[i]
		if w == "…" {
			return nil
		}
		t := m.Types[cur]
		if t == nil {
			return fmt.Errorf("%s returns no object, yet %q is chained on it", cur, w)
		}
		i++
		if fn, ok := t.Funcs[w]; ok {
			if err := args(w, fn); err != nil || elided {
				return err
			}
			switch {
			case fn.Returns == "core":
				return nil // Dagger's own functions of a File, Container or Directory follow
			case fn.Returns == "" || strings.HasPrefix(fn.Returns, "[]"):
				if i < len(words) {
					return fmt.Errorf("%s returns a value, yet %q follows", w, words[i])
				}
				return nil
			}
			cur = fn.Returns
			continue
		}
		if t.Fields[w] {
			if i < len(words) {
				return fmt.Errorf("%s is a field, yet %q follows", w, words[i])
			}
			return nil
		}
		return fmt.Errorf("%s has no function or field %q", cur, w)
	}
	return nil // dagger call prints the scalar fields of an object the chain ends on
}

// split splits a command line as a POSIX shell would into words, keeping $(…) and variables as written.
func split(line string) ([]string, error) {
	var words []string
	var b strings.Builder
	inWord := false
	var quote rune
	depth := 0
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote && depth == 0 {
				quote = 0
				continue
			}
			if r == '(' {
				depth++
			} else if r == ')' && depth > 0 {
				depth--
			}
			b.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c in %q", quote, line)
	}
	if inWord {
		words = append(words, b.String())
	}
	return words, nil
}

// Expr stands for a whole-word GitHub Actions expression (${{ … }}) in a call taken from a workflow.
const Expr = "${{expr}}"

var exprRE = regexp.MustCompile(`\$\{\{[^}]*\}\}`)

// ActionCalls finds the calls a workflow makes with dagger/dagger-for-github (verb: call, args: >- lines):
// expressions inside a word become X, whole-word ones Expr.
func ActionCalls(yml []byte) []CallLine {
	lines := strings.Split(string(yml), "\n")
	var out []CallLine
	for n, l := range lines {
		if strings.TrimSpace(l) != "verb: call" {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " "))
		for k := n + 1; k < len(lines); k++ {
			a := lines[k]
			ai := len(a) - len(strings.TrimLeft(a, " "))
			if ai < indent || strings.TrimSpace(a) == "" {
				break
			}
			t := strings.TrimSpace(a)
			if !strings.HasPrefix(t, "args:") {
				continue
			}
			v := strings.TrimSpace(strings.TrimPrefix(t, "args:"))
			var parts []string
			if v != ">-" && v != ">" && v != "|" {
				parts = append(parts, v)
			} else {
				for j := k + 1; j < len(lines); j++ {
					c := lines[j]
					if len(c)-len(strings.TrimLeft(c, " ")) <= ai || strings.TrimSpace(c) == "" {
						break
					}
					parts = append(parts, strings.TrimSpace(c))
				}
			}
			words := strings.Fields(exprRE.ReplaceAllString(strings.Join(parts, " "), "\x00"))
			for w, word := range words {
				if word == "\x00" {
					words[w] = Expr
				} else {
					words[w] = strings.ReplaceAll(word, "\x00", "X")
				}
			}
			out = append(out, CallLine{Line: k + 1, Text: "dagger call " + strings.Join(words, " ")})
			break
		}
	}
	return out
}

// CallLine is a `dagger call` command found in a document.
type CallLine struct {
	Line int
	Text string
}

// Calls finds the `dagger call` commands of a Markdown document or shell script: lines that start with it (after
// indentation or a "$ " prompt), joined with their backslash continuations, without a trailing # comment.
func Calls(doc []byte) []CallLine {
	var out []CallLine
	sc := bufio.NewScanner(bytes.NewReader(doc))
	n := 0
	for sc.Scan() {
		n++
		t := strings.TrimSpace(sc.Text())
		t = strings.TrimPrefix(t, "$ ")
		if !strings.HasPrefix(t, "dagger call ") {
			// inline code: `dagger call …` closed on the same line
			rest := t
			for {
				i := strings.Index(rest, "`dagger call ")
				if i < 0 {
					break
				}
				rest = rest[i+1:]
				j := strings.Index(rest, "`")
				if j < 0 {
					break
				}
				out = append(out, CallLine{Line: n, Text: rest[:j]})
				rest = rest[j+1:]
			}
			continue
		}
		start := n
		for strings.HasSuffix(t, "\\") && sc.Scan() {
			n++
			t = strings.TrimSpace(strings.TrimSuffix(t, "\\")) + " " + strings.TrimSpace(sc.Text())
		}
		if i := strings.Index(t, " # "); i >= 0 {
			t = t[:i]
		}
		if i := strings.Index(t, "`"); i >= 0 {
			t = t[:i] // inline code ends here
		}
		out = append(out, CallLine{Line: start, Text: strings.TrimSpace(t)})
	}
	return out
}
