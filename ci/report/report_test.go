package report

import (
	"strings"
	"testing"
	"time"
)

func sample() *Report {
	return &Report{
		Version: Version, RunID: "r1", Commit: "0123456789abcdef", Registry: "ghcr.io/acme/imagemode",
		Profile: "centos-stream-9", BaseImage: "quay.io/centos-bootc/centos-bootc:stream9",
		BaseDigest: "sha256:" + strings.Repeat("b", 64), Started: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC),
		Candidates: true,
		Layers: []Layer{
			{Name: "soe", Repository: "ghcr.io/acme/imagemode/soe", Digest: "sha256:" + strings.Repeat("1", 64),
				RunTag: "build-r1-centos-stream-9", CandidateTag: "sha-0123456789ab-centos-stream-9",
				ParentDigest: "sha256:" + strings.Repeat("b", 64), Status: StatusBuilt, DurationMS: 61234},
			{Name: "httpd", Parent: "soe", Level: 1, Repository: "ghcr.io/acme/imagemode/httpd", Digest: "sha256:" + strings.Repeat("2", 64),
				RunTag: "build-r1-centos-stream-9", CandidateTag: "sha-0123456789ab-centos-stream-9",
				ParentDigest: "sha256:" + strings.Repeat("1", 64), Status: StatusBuilt, DurationMS: 1500},
		},
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := sample()
	b, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := back.Layer("httpd")
	if !ok || h.ParentDigest != r.Layers[0].Digest || h.CandidateRef() != "ghcr.io/acme/imagemode/httpd:sha-0123456789ab-centos-stream-9" {
		t.Fatalf("httpd after round trip: %+v", h)
	}
	if _, err := Parse([]byte(`{"version": 99}`)); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("Parse of a future version: %v", err)
	}
}

func TestTable(t *testing.T) {
	r := sample()
	tab := r.Table()
	for _, want := range []string{
		"LAYER", "PARENT DIGEST", "BASE DIGEST", "DURATION",
		"soe", "built", "ghcr.io/acme/imagemode/soe:sha-0123456789ab-centos-stream-9", "sha256:111111111111",
		"sha256:bbbbbbbbbbbb", "1m1.2s", "centos-stream-9",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	r.Candidates = false
	tab = r.Table()
	if !strings.Contains(tab, "soe:build-r1-centos-stream-9") || !strings.Contains(tab, "candidate tags: not written") {
		t.Errorf("failed-run table:\n%s", tab)
	}
}

// TestTableBaseByDigest: a --base-image given by digest is printed with its digest once.
func TestTableBaseByDigest(t *testing.T) {
	r := sample()
	d := "sha256:" + strings.Repeat("b", 64)
	r.BaseImage = "10.87.0.1:5055/standin/base@" + d
	head, _, _ := strings.Cut(r.Table(), "\n")
	if strings.Count(head, "sha256:") != 1 || !strings.HasSuffix(head, "base 10.87.0.1:5055/standin/base@sha256:bbbbbbbbbbbb") {
		t.Errorf("header %q", head)
	}
	r.BaseImage = "quay.io/centos-bootc/centos-bootc:stream9"
	head, _, _ = strings.Cut(r.Table(), "\n")
	if !strings.HasSuffix(head, "base quay.io/centos-bootc/centos-bootc:stream9@sha256:bbbbbbbbbbbb") {
		t.Errorf("header %q", head)
	}
}

func TestCriticalPath(t *testing.T) {
	r := sample()
	r.Layers = append(r.Layers,
		Layer{Name: "homepage", Parent: "httpd", DurationMS: 1000},
		Layer{Name: "database", Parent: "soe", DurationMS: 2000})
	// soe 61234 + httpd 1500 + homepage 1000 = 63734 > soe + database = 63234.
	if got := r.CriticalPath(); got != 63734*time.Millisecond {
		t.Errorf("critical path %s", got)
	}
}
