package build

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"path"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// SecretMount is a RUN --mount=type=secret flag of a Containerfile.
type SecretMount struct {
	// ID is the secret's id (default: the target's base name, as BuildKit does).
	ID string
	// Line is the line of the RUN instruction.
	Line int
	// Flag is the flag as written, without the leading "--mount=".
	Flag string
}

// SecretMounts lists the secret mounts of every RUN instruction.
func SecretMounts(containerfile []byte) ([]SecretMount, error) {
	res, err := parser.Parse(bytes.NewReader(containerfile))
	if err != nil {
		return nil, fmt.Errorf("parsing: %w", err)
	}
	var out []SecretMount
	for _, n := range res.AST.Children {
		if !strings.EqualFold(n.Value, "run") {
			continue
		}
		for _, f := range n.Flags {
			v, ok := strings.CutPrefix(f, "--mount=")
			if !ok {
				continue
			}
			fields, err := csv.NewReader(strings.NewReader(v)).Read()
			if err != nil {
				return nil, fmt.Errorf("line %d: --mount=%s: %w", n.StartLine, v, err)
			}
			kind, id, target := "bind", "", ""
			for _, field := range fields {
				k, val, _ := strings.Cut(field, "=")
				switch strings.ToLower(k) {
				case "type":
					kind = val
				case "id":
					id = val
				case "target", "dst", "destination":
					target = val
				}
			}
			if kind != "secret" {
				continue
			}
			if id == "" {
				id = path.Base(target)
			}
			out = append(out, SecretMount{ID: id, Line: n.StartLine, Flag: v})
		}
	}
	return out, nil
}

// WithoutSecretMounts removes the RUN --mount=type=secret flags whose secret keep does not hold, leaving every other
// byte of the Containerfile as it is. A build without a secret then behaves as BuildKit does for an absent optional
// secret (no mount), and engines that give absent secrets random ids (Dagger v0.19) cache the step again. It returns
// the ids removed. A flag that is not written out literally (quoted) is an error, never left half-removed.
func WithoutSecretMounts(containerfile []byte, keep func(id string) bool) ([]byte, []string, error) {
	mounts, err := SecretMounts(containerfile)
	if err != nil {
		return nil, nil, err
	}
	lines := strings.SplitAfter(string(containerfile), "\n")
	var removed []string
	drop := map[int]bool{}
	for _, m := range mounts {
		if keep(m.ID) {
			continue
		}
		flag := "--mount=" + m.Flag
		found := false
		for i := m.Line - 1; i < len(lines); i++ {
			idx := strings.Index(lines[i], flag)
			if idx < 0 {
				if i > m.Line-1 && !strings.HasSuffix(strings.TrimRight(lines[i], " \t\r\n"), "\\") {
					break
				}
				continue
			}
			rest := strings.TrimLeft(lines[i][idx+len(flag):], " \t")
			lines[i] = lines[i][:idx] + rest
			if i > m.Line-1 && strings.TrimSpace(lines[i]) == "\\" {
				drop[i] = true
			}
			found = true
			break
		}
		if !found {
			return nil, nil, fmt.Errorf("line %d: cannot remove the mount of absent secret %q: write the flag unquoted (--mount=%s)", m.Line, m.ID, m.Flag)
		}
		removed = append(removed, m.ID)
	}
	var b strings.Builder
	for i, l := range lines {
		if !drop[i] {
			b.WriteString(l)
		}
	}
	out := []byte(b.String())
	after, err := SecretMounts(out)
	if err != nil {
		return nil, nil, fmt.Errorf("after removing secret mounts: %w", err)
	}
	for _, m := range after {
		if !keep(m.ID) {
			return nil, nil, fmt.Errorf("line %d: the mount of absent secret %q is still there after removal", m.Line, m.ID)
		}
	}
	if err := sameInstructions(containerfile, out); err != nil {
		return nil, nil, err
	}
	return out, removed, nil
}

// sameInstructions checks that removing flags changed nothing else: the same instructions with the same arguments.
func sameInstructions(a, b []byte) error {
	pa, err := parser.Parse(bytes.NewReader(a))
	if err != nil {
		return err
	}
	pb, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("after removing secret mounts: %w", err)
	}
	if len(pa.AST.Children) != len(pb.AST.Children) {
		return fmt.Errorf("removing secret mounts changed the number of instructions (%d → %d)", len(pa.AST.Children), len(pb.AST.Children))
	}
	for i := range pa.AST.Children {
		x, y := pa.AST.Children[i], pb.AST.Children[i]
		if x.Value != y.Value || args(x) != args(y) {
			return fmt.Errorf("line %d: removing secret mounts changed the instruction", x.StartLine)
		}
	}
	return nil
}

func args(n *parser.Node) string {
	var parts []string
	for c := n.Next; c != nil; c = c.Next {
		parts = append(parts, c.Value)
	}
	return strings.Join(parts, "\x00")
}
