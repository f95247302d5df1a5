package main

import "runtime/debug"

// toolVersion is imagemode's version for the SBOMs it writes: the module version when built from a tagged
// module, else the VCS revision the binary was built from, else "devel".
func toolVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return "devel"
}
