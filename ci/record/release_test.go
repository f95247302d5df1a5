package record

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func validRelease() Release {
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	return Release{Version: Version, Release: "1.4.2", Tag: "v1.4.2", Commit: strings.Repeat("c", 40), Profile: "centos-stream-9",
		RunID: "gh-1-1", RunRecord: d("e"), Created: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC),
		Layers: []ReleaseLayer{{Layer: "soe", Digest: d("a")}, {Layer: "httpd", Parent: "soe", Digest: d("b")}}}
}

func TestParseRelease(t *testing.T) {
	good, err := json.Marshal(validRelease())
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRelease(good)
	if err != nil {
		t.Fatal(err)
	}
	if r.Digests()["httpd"] != "sha256:"+strings.Repeat("b", 64) {
		t.Errorf("digests %v", r.Digests())
	}
	for name, mutate := range map[string]func(*Release){
		"tag of another version": func(r *Release) { r.Tag = "v1.4.3" },
		"short commit":           func(r *Release) { r.Commit = "abc" },
		"malformed digest":       func(r *Release) { r.Layers[1].Digest = "sha256:zz" },
		"parent after child":     func(r *Release) { r.Layers[0], r.Layers[1] = r.Layers[1], r.Layers[0] },
		"layer twice":            func(r *Release) { r.Layers[1].Layer = "soe" },
		"no run record":          func(r *Release) { r.RunRecord = "" },
		"no layers":              func(r *Release) { r.Layers = nil },
		"another format version": func(r *Release) { r.Version = 2 },
		"no time":                func(r *Release) { r.Created = time.Time{} },
		"a profile with a slash": func(r *Release) { r.Profile = "a/b" },
	} {
		r := validRelease()
		mutate(&r)
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseRelease(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseRelease([]byte(strings.Replace(string(good), `"version"`, `"extra":1,"version"`, 1))); err == nil {
		t.Error("an unknown field was accepted")
	}
	if _, err := ParseRelease(append(good, []byte(`{}`)...)); err == nil {
		t.Error("data after the record was accepted")
	}
}

func FuzzParseRelease(f *testing.F) {
	good, err := json.Marshal(validRelease())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRelease(data)
		if err != nil {
			return
		}
		// Whatever parses is valid, and survives a round trip unchanged.
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed yet invalid: %v", err)
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseRelease(again)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if len(r2.Layers) != len(r.Layers) || r2.Release != r.Release || r2.Commit != r.Commit {
			t.Fatalf("round trip changed the record: %+v / %+v", r, r2)
		}
	})
}

func TestAnchorIsAFunctionOfCommitAndProfile(t *testing.T) {
	c := strings.Repeat("a", 40)
	m1, d1, err := Anchor(c, "centos-stream-9")
	if err != nil {
		t.Fatal(err)
	}
	m2, d2, _ := Anchor(c, "centos-stream-9")
	_, d3, _ := Anchor(c, "centos-stream-10")
	_, d4, _ := Anchor(strings.Repeat("b", 40), "centos-stream-9")
	if string(m1) != string(m2) || d1 != d2 {
		t.Error("the same commit and profile gave two anchors")
	}
	if d1 == d3 || d1 == d4 || d3 == d4 {
		t.Error("two commits or profiles share an anchor")
	}
	var m map[string]any
	if err := json.Unmarshal(m1, &m); err != nil || m["artifactType"] != AnchorArtifactType {
		t.Errorf("anchor manifest %s: %v", m1, err)
	}
	if _, _, err := Anchor("abc", "p"); err == nil {
		t.Error("a short commit was accepted")
	}
}
