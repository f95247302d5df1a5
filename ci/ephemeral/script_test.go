package ephemeral

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagemode/imagemode/ci/vm"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestScriptGolden(t *testing.T) {
	s, err := Script(ScriptOptions{Rootfs: "/rootfs", Work: "/work", Accel: vm.AccelAuto, SerialPort: 4444,
		VM: vm.Config{MemoryMB: 2048, NoReboot: true, Forwards: []vm.Forward{{Guest: 80, Host: 8080, Bind: "0.0.0.0"}},
			Credentials: map[string]string{"imagemode.mariadb-user": "smoke:pw"}}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join("testdata", "boot.sh.golden")
	if *update {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if s != string(want) {
		t.Errorf("boot script differs:\n%s", s)
	}
	if _, err := Script(ScriptOptions{Rootfs: "/root fs", Work: "/w"}); err == nil {
		t.Error("an unsafe path was accepted")
	}
}
