package smoke

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func goodVerdict() Verdict {
	return Verdict{Verdict: Pass, Image: "r/homepage@sha256:" + strings.Repeat("a", 64), Digest: "sha256:" + strings.Repeat("a", 64),
		Layer: "homepage", Mode: ModeEphemeral, Accel: "tcg", Started: time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)}
}

func TestParseVerdictStrict(t *testing.T) {
	b, err := json.Marshal(goodVerdict())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseVerdict(b); err != nil {
		t.Fatalf("a good verdict: %v", err)
	}
	cases := map[string]func(*Verdict){
		"verdict": func(v *Verdict) { v.Verdict = "passed" },
		"empty":   func(v *Verdict) { v.Verdict = "" },
		"digest":  func(v *Verdict) { v.Digest = "" },
		"digest2": func(v *Verdict) { v.Digest = "sha256:abc" },
		"layer":   func(v *Verdict) { v.Layer = "" },
		"started": func(v *Verdict) { v.Started = time.Time{} },
	}
	for name, change := range cases {
		v := goodVerdict()
		change(&v)
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseVerdict(b); err == nil {
			t.Errorf("%s: a malformed verdict was accepted: %s", name, b)
		}
	}
	if _, err := ParseVerdict([]byte(`{"verdict":"pass","started":"yesterday"}`)); err == nil {
		t.Error("a bad time was accepted")
	}
}

// FuzzParseVerdict: whatever the bytes, ParseVerdict does not panic, and what it accepts is a complete verdict.
func FuzzParseVerdict(f *testing.F) {
	b, err := json.Marshal(goodVerdict())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"verdict":"fail","digest":"sha256:` + strings.Repeat("0", 64) + `","layer":"soe","started":"2026-12-05T01:00:00Z"}`))
	f.Add([]byte(`{"verdict":"pass"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"verdict":"pass","started":"0001-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseVerdict(data)
		if err != nil {
			return
		}
		if (v.Verdict != Pass && v.Verdict != Fail) || v.Layer == "" || v.Started.IsZero() || !strings.HasPrefix(v.Digest, "sha256:") {
			t.Errorf("accepted an incomplete verdict: %+v", v)
		}
	})
}
