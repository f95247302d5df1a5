package release

import (
	"fmt"
	"math"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// Version is a release version from a git tag vX.Y.Z[-pre].
type Version struct {
	Major, Minor, Patch int
	Pre                 string
}

// ParseTag parses a git tag such as v1.4.2 or v2.0.0-rc.1 with a strict semantic-version parser
// (github.com/Masterminds/semver/v3 StrictNewVersion): the shorthands v1.2 and v1 are refused, leading zeros too,
// and build metadata (it cannot be part of an image tag).
func ParseTag(tag string) (Version, error) {
	bad := fmt.Errorf("git tag %q is not a release version: want vMAJOR.MINOR.PATCH, optionally -PRERELEASE (e.g. v1.4.2, v2.0.0-rc.1)", tag)
	rest, ok := strings.CutPrefix(tag, "v")
	if !ok || rest == "" || rest[0] < '0' || rest[0] > '9' {
		return Version{}, bad
	}
	sv, err := semver.StrictNewVersion(rest)
	if err != nil {
		return Version{}, fmt.Errorf("%w (%v)", bad, err)
	}
	if sv.Metadata() != "" {
		return Version{}, fmt.Errorf("git tag %q: build metadata (+%s) cannot be part of an image tag", tag, sv.Metadata())
	}
	v := Version{Pre: sv.Prerelease()}
	for i, n := range []uint64{sv.Major(), sv.Minor(), sv.Patch()} {
		if n > math.MaxInt32 {
			return Version{}, fmt.Errorf("git tag %q: version number %d is too large", tag, n)
		}
		*[]*int{&v.Major, &v.Minor, &v.Patch}[i] = int(n)
	}
	if v.String() != rest {
		return Version{}, bad // the strict parser and the tag disagree: never guess
	}
	return v, nil
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

// Compare orders versions by semver precedence (-1, 0, 1), with the same library.
func (v Version) Compare(o Version) int {
	a, aerr := semver.StrictNewVersion(v.String())
	b, berr := semver.StrictNewVersion(o.String())
	if aerr != nil || berr != nil {
		// Zero values (no release yet) sort first.
		return sign(strings.Compare(v.String(), o.String()))
	}
	return a.Compare(b)
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
