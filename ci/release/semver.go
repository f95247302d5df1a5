package release

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Version is a release version from a git tag vX.Y.Z[-pre].
type Version struct {
	Major, Minor, Patch int
	Pre                 string
}

var semverRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(\+[0-9A-Za-z.-]+)?$`)

// ParseTag parses a git tag such as v1.4.2 or v2.0.0-rc.1.
func ParseTag(tag string) (Version, error) {
	m := semverRE.FindStringSubmatch(tag)
	if m == nil {
		return Version{}, fmt.Errorf("git tag %q is not a release version: want vMAJOR.MINOR.PATCH, optionally -PRERELEASE (e.g. v1.4.2, v2.0.0-rc.1)", tag)
	}
	if m[5] != "" {
		return Version{}, fmt.Errorf("git tag %q: build metadata (%s) cannot be part of an image tag", tag, m[5])
	}
	v := Version{Pre: m[4]}
	for i, dst := range []*int{&v.Major, &v.Minor, &v.Patch} {
		n, err := strconv.Atoi(m[i+1])
		if err != nil {
			return Version{}, fmt.Errorf("git tag %q: %w", tag, err)
		}
		*dst = n
	}
	for _, id := range strings.Split(v.Pre, ".") {
		if len(id) > 1 && id[0] == '0' && isNumeric(id) {
			return Version{}, fmt.Errorf("git tag %q: numeric pre-release identifier %q has a leading zero", tag, id)
		}
	}
	return v, nil
}

func isNumeric(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// String is X.Y.Z[-pre] (no "v").
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	return s
}

// Prerelease reports whether v has a pre-release part.
func (v Version) Prerelease() bool { return v.Pre != "" }

// Compare orders versions by semver precedence (-1, 0, 1).
func (v Version) Compare(o Version) int {
	for _, d := range []int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		if d != 0 {
			return sign(d)
		}
	}
	switch {
	case v.Pre == o.Pre:
		return 0
	case v.Pre == "":
		return 1
	case o.Pre == "":
		return -1
	}
	a, b := strings.Split(v.Pre, "."), strings.Split(o.Pre, ".")
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] == b[i] {
			continue
		}
		an, bn := isNumeric(a[i]), isNumeric(b[i])
		switch {
		case an && bn:
			x, _ := strconv.Atoi(a[i])
			y, _ := strconv.Atoi(b[i])
			return sign(x - y)
		case an:
			return -1
		case bn:
			return 1
		default:
			return sign(strings.Compare(a[i], b[i]))
		}
	}
	return sign(len(a) - len(b))
}

func sign(d int) int {
	switch {
	case d < 0:
		return -1
	case d > 0:
		return 1
	}
	return 0
}

// Tags are the release tags of v for a profile, most specific first: X.Y.Z-<profile>, X.Y-<profile>, <profile>.
// A pre-release gets only X.Y.Z-pre-<profile>: channels follow stable releases.
func (v Version) Tags(profile string) []string {
	if v.Prerelease() {
		return []string{v.String() + "-" + profile}
	}
	return []string{
		fmt.Sprintf("%d.%d.%d-%s", v.Major, v.Minor, v.Patch, profile),
		fmt.Sprintf("%d.%d-%s", v.Major, v.Minor, profile),
		profile,
	}
}

// parseReleaseTag recognises X.Y.Z-<profile> tags of stable releases.
func parseReleaseTag(tag, profile string) (Version, bool) {
	s, ok := strings.CutSuffix(tag, "-"+profile)
	if !ok {
		return Version{}, false
	}
	v, err := ParseTag("v" + s)
	if err != nil || v.Prerelease() {
		return Version{}, false
	}
	return v, true
}
