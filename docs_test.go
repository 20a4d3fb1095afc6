package fmgpu

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// citation is how code cites a section of the project's documents:
// docs/NAME.md, "Heading" (in a Go string, with escaped quotes).
var citation = regexp.MustCompile(`docs/([a-z]+\.md), \\?"([^"\\]+)\\?"`)

// Every docs/NAME.md, "Heading" cited in the sources names a document
// that exists and a heading of it (the cited text begins the heading): a
// user sent there by an error message or a flag's help finds it.
func TestDocCitationsResolve(t *testing.T) {
	headings := map[string][]string{}
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != "." {
			return filepath.SkipDir
		}
		switch filepath.Ext(path) {
		case ".go", ".cu", ".cuh", ".cc", ".sh":
		default:
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range citation.FindAllStringSubmatch(string(src), -1) {
			doc, head := m[1], m[2]
			hs, ok := headings[doc]
			if !ok {
				b, err := os.ReadFile(filepath.Join("docs", doc))
				if err != nil {
					t.Errorf("%s cites docs/%s: %v", path, doc, err)
					headings[doc] = nil
					continue
				}
				fenced := false // a '#' line in a code block is no heading
				for _, l := range strings.Split(string(b), "\n") {
					if strings.HasPrefix(l, "```") {
						fenced = !fenced
					}
					if !fenced && strings.HasPrefix(l, "#") {
						hs = append(hs, strings.TrimSpace(strings.TrimLeft(l, "#")))
					}
				}
				headings[doc] = hs
			}
			found := false
			for _, h := range hs {
				found = found || strings.HasPrefix(h, head)
			}
			if !found {
				t.Errorf("%s cites docs/%s, %q: no such heading", path, doc, head)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("no citation found: the pattern no longer matches how the code cites the documents")
	}
}
