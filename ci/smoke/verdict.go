package smoke

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Verdicts.
const (
	Pass = "pass"
	Fail = "fail"
)

// Verdict is the smoke-test result for one image digest: the predicate of its signed attestation
// (signing.PredicateSmoke), which promotion checks.
type Verdict struct {
	Verdict string `json:"verdict"`
	// Image is repository@digest; Digest its digest.
	Image   string `json:"image"`
	Digest  string `json:"digest"`
	Layer   string `json:"layer,omitempty"`
	Profile string `json:"profile,omitempty"`
	// Commit is the commit of the run that tested the image: a reused image keeps the revision label of the commit
	// it was built at, and a signed passing verdict naming a later commit makes it that commit's candidate too.
	Commit string `json:"commit,omitempty"`
	// RunID is the run that tested it (the ci run's id): a run record binds it (ci/record).
	RunID string `json:"runId,omitempty"`
	// Mode is "ephemeral" or "disk"; Accel "kvm" or "tcg".
	Mode   string        `json:"mode"`
	Accel  string        `json:"accel"`
	Probes []ProbeResult `json:"probes"`
	// Reason says why a failed verdict failed.
	Reason string `json:"reason,omitempty"`
	// SerialTail is the end of the guest's serial console, kept on failure.
	SerialTail string    `json:"serialTail,omitempty"`
	Started    time.Time `json:"started"`
	DurationMS int64     `json:"durationMs"`
}

// ProbeResult is one probe's outcome.
type ProbeResult struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// SinceBootMS is the time from the VM's start to the probe's first success.
	SinceBootMS int64  `json:"sinceBootMs"`
	Attempts    int    `json:"attempts"`
	Detail      string `json:"detail,omitempty"`
}

// ParseVerdict decodes a verdict predicate strictly: a verdict that is neither pass nor fail, or that lacks its
// digest, layer or start time, is an error — promotion stops on it, never skips it or sorts it as the oldest.
func ParseVerdict(data []byte) (Verdict, error) {
	var v Verdict
	if err := json.Unmarshal(data, &v); err != nil {
		return Verdict{}, fmt.Errorf("decoding a smoke verdict: %w", err)
	}
	if v.Verdict != Pass && v.Verdict != Fail {
		return Verdict{}, fmt.Errorf("smoke verdict %q is neither %q nor %q", v.Verdict, Pass, Fail)
	}
	var missing []string
	if !strings.HasPrefix(v.Digest, "sha256:") || len(v.Digest) != len("sha256:")+64 {
		missing = append(missing, "digest")
	}
	if v.Layer == "" {
		missing = append(missing, "layer")
	}
	if v.Started.IsZero() {
		missing = append(missing, "started")
	}
	if len(missing) > 0 {
		return Verdict{}, fmt.Errorf("smoke verdict of %s lacks %s", orUnknown(v.Image), strings.Join(missing, ", "))
	}
	return v, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown image"
	}
	return s
}
