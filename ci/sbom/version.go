package sbom

import (
	"strconv"
	"strings"
)

// CompareVersions orders two versions of a package of type typ ("deb": dpkg's rules, "rpm": rpmvercmp's) and
// returns -1, 0 or 1. Versions may carry an epoch ("1:2.4-1").
func CompareVersions(typ, a, b string) int {
	ea, ra := splitEpoch(a)
	eb, rb := splitEpoch(b)
	if ea != eb {
		return sign(ea - eb)
	}
	if typ == "deb" {
		ua, va := splitLast(ra, "-")
		ub, vb := splitLast(rb, "-")
		if c := debCompare(ua, ub); c != 0 {
			return c
		}
		return debCompare(va, vb)
	}
	ua, va := splitLast(ra, "-")
	ub, vb := splitLast(rb, "-")
	if c := rpmCompare(ua, ub); c != 0 {
		return c
	}
	return rpmCompare(va, vb)
}

func splitEpoch(v string) (int, string) {
	if e, rest, ok := strings.Cut(v, ":"); ok {
		if n, err := strconv.Atoi(e); err == nil {
			return n, rest
		}
	}
	return 0, v
}

func splitLast(v, sep string) (string, string) {
	if i := strings.LastIndex(v, sep); i >= 0 {
		return v[:i], v[i+1:]
	}
	return v, ""
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// debOrder is dpkg's weight of a character in the non-digit part: '~' before everything, the end, letters, then
// everything else.
func debOrder(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	c := s[i]
	switch {
	case isDigit(c):
		return 0
	case isAlpha(c):
		return int(c)
	case c == '~':
		return -1
	}
	return int(c) + 256
}

// debCompare is dpkg's verrevcmp.
func debCompare(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := debOrder(a, i), debOrder(b, j)
			if ac != bc {
				return sign(ac - bc)
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		firstDiff := 0
		for i < len(a) && isDigit(a[i]) && j < len(b) && isDigit(b[j]) {
			if firstDiff == 0 {
				firstDiff = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if firstDiff != 0 {
			return sign(firstDiff)
		}
	}
	return 0
}

// rpmCompare is rpmvercmp: alternating digit and letter segments; '~' sorts before anything, '^' after the end of
// the other version but before anything else.
func rpmCompare(a, b string) int {
	if a == b {
		return 0
	}
	sep := func(c byte) bool { return !isDigit(c) && !isAlpha(c) && c != '~' && c != '^' }
	for len(a) > 0 || len(b) > 0 {
		for len(a) > 0 && sep(a[0]) {
			a = a[1:]
		}
		for len(b) > 0 && sep(b[0]) {
			b = b[1:]
		}
		if strings.HasPrefix(a, "~") || strings.HasPrefix(b, "~") {
			if !strings.HasPrefix(a, "~") {
				return 1
			}
			if !strings.HasPrefix(b, "~") {
				return -1
			}
			a, b = a[1:], b[1:]
			continue
		}
		if strings.HasPrefix(a, "^") || strings.HasPrefix(b, "^") {
			switch {
			case a == "":
				return -1
			case b == "":
				return 1
			case !strings.HasPrefix(a, "^"):
				return 1
			case !strings.HasPrefix(b, "^"):
				return -1
			}
			a, b = a[1:], b[1:]
			continue
		}
		if a == "" || b == "" {
			break
		}
		class := isAlpha
		if isDigit(a[0]) {
			class = isDigit
		}
		n, m := 0, 0
		for n < len(a) && class(a[n]) {
			n++
		}
		for m < len(b) && class(b[m]) {
			m++
		}
		sa, sb := a[:n], b[:m]
		a, b = a[n:], b[m:]
		if sb == "" {
			// Segments of different classes: a number is newer than letters.
			if isDigit(sa[0]) {
				return 1
			}
			return -1
		}
		if isDigit(sa[0]) {
			sa, sb = strings.TrimLeft(sa, "0"), strings.TrimLeft(sb, "0")
			if len(sa) != len(sb) {
				return sign(len(sa) - len(sb))
			}
		}
		if c := strings.Compare(sa, sb); c != 0 {
			return c
		}
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	}
	return 1
}
