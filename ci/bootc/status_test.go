package bootc

import (
	"strings"
	"testing"
)

const sample = `{"apiVersion":"org.containers.bootc/v1","kind":"BootcHost","metadata":{"name":"host"},
"spec":{"image":{"image":"ghcr.io/acme/imagemode/homepage:centos-stream-9","transport":"registry"},"bootOrder":"default"},
"status":{"staged":null,
"booted":{"image":{"image":{"image":"ghcr.io/acme/imagemode/homepage:centos-stream-9","transport":"registry"},"version":"stream9.20261120.0","timestamp":"2026-11-20T10:00:00Z","imageDigest":"sha256:aaaa"},"cachedUpdate":null,"incompatible":false,"pinned":false,"store":"ostreeContainer"},
"rollback":{"image":{"image":{"image":"ghcr.io/acme/imagemode/httpd:centos-stream-9","transport":"registry"},"imageDigest":"sha256:bbbb"},"pinned":false},
"rollbackQueued":false,"type":"bootcHost"}}`

func TestParse(t *testing.T) {
	s, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	d, ref, err := s.Booted()
	if err != nil || d != "sha256:aaaa" || ref != "ghcr.io/acme/imagemode/homepage:centos-stream-9" {
		t.Errorf("booted = %q %q %v", d, ref, err)
	}
	if s.Status.Rollback.Digest() != "sha256:bbbb" || s.Status.Staged.Digest() != "" || s.Spec.Image.Transport != "registry" {
		t.Errorf("status = %+v", s.Status)
	}
	if _, err := Parse([]byte(`{"kind":"Other"}`)); err == nil || !strings.Contains(err.Error(), "BootcHost") {
		t.Errorf("wrong kind: %v", err)
	}
	empty, err := Parse([]byte(`{"kind":"BootcHost","status":{"booted":null}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := empty.Booted(); err == nil {
		t.Error("no booted image must be an error")
	}
}
