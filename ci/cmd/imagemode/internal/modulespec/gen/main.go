// Command gen writes moduleargs_gen.go of the CLI from the Dagger module's source: go generate ./ci/cmd/imagemode.
package main

import (
	"fmt"
	"os"

	"github.com/imagemode/imagemode/ci/cmd/imagemode/internal/modulespec"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gen MODULE_DIR OUT.go")
		os.Exit(2)
	}
	args, err := modulespec.Read(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	src, err := modulespec.Generate(args, "main")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(os.Args[2], src, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
