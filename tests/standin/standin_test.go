package standin

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The stand-in family must serve the product's pages, so that the smoke probes declared in layers.yaml mean the
// same on both.
func TestStandinPagesAreTheProducts(t *testing.T) {
	for _, p := range []string{"httpd/html/index.html", "httpd/html/style.css", "homepage/html/index.html"} {
		product, err := os.ReadFile(filepath.Join("..", "..", "containerfiles", p))
		if err != nil {
			t.Fatal(err)
		}
		standin, err := os.ReadFile(filepath.Join(ContainerfilesDir(), p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(product, standin) {
			t.Errorf("%s differs between containerfiles/ and the stand-in family: copy it", p)
		}
	}
}
