package buildstep

import (
	"strings"
	"testing"
)

func TestParseAndResults(t *testing.T) {
	f := File{RunID: "r1", Builds: []Build{
		{Layer: "httpd", Containerfile: "Containerfile", Target: "r.example/imagemode/httpd:build-r1-x"},
		{Layer: "database", Containerfile: "Containerfile", Target: "r.example/imagemode/database:build-r1-x"},
	}}
	data, err := f.JSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data)
	if err != nil || got.Over() || len(got.Builds) != 2 || got.RunID != "r1" {
		t.Fatalf("parse: %+v %v", got, err)
	}
	for _, c := range []struct {
		results []Result
		want    string
	}{
		{nil, "no result for [database httpd]"},
		{[]Result{{Layer: "httpd", Digest: "sha256:1"}}, "no result for [database]"},
		{[]Result{{Layer: "httpd", Digest: "sha256:1"}, {Layer: "database", Digest: "sha256:2", Error: "x"}}, "not both or neither"},
		{[]Result{{Layer: "httpd", Digest: "sha256:1"}, {Layer: "httpd", Digest: "sha256:1"}}, "two results"},
		{[]Result{{Layer: "soe", Digest: "sha256:1"}}, "did not ask"},
		{[]Result{{Layer: "httpd", Digest: "sha256:1"}, {Layer: "database", Error: "push refused"}}, ""},
	} {
		got.Results = c.results
		err := got.CheckResults()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("results %+v: %v, want %q", c.results, err, c.want)
		}
	}
	for _, bad := range []string{
		`{"version": 2, "report": {}}`,
		`{"version": 1}`,
		`{"version": 1, "builds": [{"layer": "a"}]}`,
		`{"version": 1, "builds": [{"layer": "a", "target": "t:x", "containerfile": "C"}, {"layer": "a", "target": "t:x", "containerfile": "C"}]}`,
		`not json`,
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%s) accepted it", bad)
		}
	}
	over, err := Parse([]byte(`{"version": 1, "report": {"runId": "r1"}, "error": "level 0: boom"}`))
	if err != nil || !over.Over() || over.Report.RunID != "r1" {
		t.Errorf("a finished step: %+v %v", over, err)
	}

}
