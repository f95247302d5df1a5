package tags

import (
	"strings"
	"testing"
	"time"
)

func TestTags(t *testing.T) {
	if got := Run("20261126t0900-ab12cd", "centos-stream-9"); got != "build-20261126t0900-ab12cd-centos-stream-9" {
		t.Errorf("Run = %q", got)
	}
	if got := Candidate("0123456789abcdef0123456789abcdef01234567", "rhel-9.6"); got != "sha-0123456789ab-rhel-9.6" {
		t.Errorf("Candidate = %q", got)
	}
	if got := Inputs("sha256:" + strings.Repeat("ab", 32)); got != "inputs-"+strings.Repeat("ab", 32) {
		t.Errorf("Inputs = %q", got)
	}
	if long := Run(strings.Repeat("a", 40), strings.Repeat("b", 40)); !Valid(long) {
		t.Errorf("the longest run tag %q is invalid", long)
	}
}

func TestValidation(t *testing.T) {
	for _, ok := range []string{"1", "gh-12345-1", "20261126t090000-3fa9c1"} {
		if err := ValidateRunID(ok); err != nil {
			t.Errorf("ValidateRunID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", "Run", "a b", strings.Repeat("a", 41)} {
		if err := ValidateRunID(bad); err == nil || !strings.Contains(err.Error(), "--run-id") {
			t.Errorf("ValidateRunID(%q) = %v", bad, err)
		}
	}
	for _, ok := range []string{"0123456789ab", strings.Repeat("a", 40), strings.Repeat("b", 64)} {
		if err := ValidateCommit(ok); err != nil {
			t.Errorf("ValidateCommit(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"HEAD", "abc1234", "0123456789AB", strings.Repeat("a", 65)} {
		if err := ValidateCommit(bad); err == nil || !strings.Contains(err.Error(), "--commit") {
			t.Errorf("ValidateCommit(%q) = %v", bad, err)
		}
	}
	id := NewRunID(time.Date(2026, 11, 26, 9, 15, 0, 0, time.UTC))
	if !strings.HasPrefix(id, "20261126t091500-") || ValidateRunID(id) != nil {
		t.Errorf("NewRunID = %q", id)
	}
}
