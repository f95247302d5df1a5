package release

import (
	"reflect"
	"strings"
	"testing"

	"github.com/imagemode/imagemode/ci/tags"
)

func TestParseTagAndTags(t *testing.T) {
	v, err := ParseTag("v1.4.2")
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Tags("rhel-9.6"); !reflect.DeepEqual(got, []string{"1.4.2-rhel-9.6", "1.4-rhel-9.6", "rhel-9.6"}) {
		t.Errorf("tags = %v", got)
	}
	rc, err := ParseTag("v2.0.0-rc.1")
	if err != nil {
		t.Fatal(err)
	}
	if got := rc.Tags("rhel-10"); !reflect.DeepEqual(got, []string{"2.0.0-rc.1-rhel-10"}) {
		t.Errorf("pre-release tags = %v", got)
	}
	for _, bad := range []string{"1.2.3", "v1.2", "v01.2.3", "v1.2.3-", "v1.2.3+build.5", "v1.2.3-rc.01", "latest", "v1.2.3-rc..1", "v99999999999999999999.0.0"} {
		if _, err := ParseTag(bad); err == nil {
			t.Errorf("ParseTag(%q) accepted", bad)
		}
	}
}

func TestCompare(t *testing.T) {
	order := []string{"v1.0.0-alpha", "v1.0.0-alpha.1", "v1.0.0-alpha.beta", "v1.0.0-beta", "v1.0.0-beta.2", "v1.0.0-beta.11", "v1.0.0-rc.1", "v1.0.0", "v1.0.1", "v1.2.0", "v2.0.0"}
	for i := 0; i+1 < len(order); i++ {
		a, _ := ParseTag(order[i])
		b, _ := ParseTag(order[i+1])
		if a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 {
			t.Errorf("%s < %s violated", order[i], order[i+1])
		}
	}
	if v, ok := parseReleaseTag("1.4.2-centos-stream-9", "centos-stream-9"); !ok || v.String() != "1.4.2" {
		t.Errorf("parseReleaseTag = %v %v", v, ok)
	}
	for _, tg := range []string{"1.4-centos-stream-9", "centos-stream-9", "2.0.0-rc.1-centos-stream-9", "1.4.2-centos-stream-10"} {
		if _, ok := parseReleaseTag(tg, "centos-stream-9"); ok {
			t.Errorf("parseReleaseTag(%q) accepted", tg)
		}
	}
}

// FuzzParseTag: no input panics; an accepted tag is exactly vMAJOR.MINOR.PATCH[-PRE] (it prints back as itself) and
// every tag made of it is a valid OCI tag; shorthands such as v1.2 are never accepted.
func FuzzParseTag(f *testing.F) {
	for _, s := range []string{"v1.4.2", "v2.0.0-rc.1", "v1.2", "v01.2.3", "v1.2.3+meta", "v1.2.3-01", "1.2.3", "v1.2.3-",
		"v99999999999999999999.0.0", "v1.2.3-rc.1.alpha-2", "v0.0.0", "v1.2.3 ", "v1.2.3-a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		v, err := ParseTag(tag)
		if err != nil {
			return
		}
		if "v"+v.String() != tag {
			t.Errorf("%q parsed as %q", tag, v.String())
		}
		if strings.Count(tag, ".") < 2 {
			t.Errorf("shorthand %q accepted", tag)
		}
		for _, tg := range v.Tags("centos-stream-9") {
			if !tags.Valid(tg) {
				t.Errorf("%q makes the invalid tag %q", tag, tg)
			}
		}
		if v.Compare(v) != 0 {
			t.Errorf("%q does not equal itself", tag)
		}
	})
}
