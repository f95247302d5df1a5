package ephemeral

import (
	"testing"

	"github.com/imagemode/imagemode/ci/internal/golden"
	"github.com/imagemode/imagemode/ci/vm"
)

func TestScriptGolden(t *testing.T) {
	s, err := Script(ScriptOptions{Rootfs: "/rootfs", Work: "/work", Accel: vm.AccelAuto, SerialPort: 4444,
		VM: vm.Config{MemoryMB: 2048, NoReboot: true, Forwards: []vm.Forward{{Guest: 80, Host: 8080, Bind: "0.0.0.0"}},
			Credentials: map[string]string{"imagemode.mariadb-user": "smoke:pw"}}})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "boot.sh.golden", []byte(s))
	if _, err := Script(ScriptOptions{Rootfs: "/root fs", Work: "/w"}); err == nil {
		t.Error("an unsafe path was accepted")
	}
}
