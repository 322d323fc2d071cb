package diff

import (
	"strings"
	"testing"
)

// FuzzLines: any two texts diff into lines that rebuild both, with hunks that never panic.
func FuzzLines(f *testing.F) {
	f.Add("a\nb\nc\n", "a\nc\nd\n")
	f.Add("", "x")
	f.Add("same", "same")
	f.Fuzz(func(t *testing.T, a, b string) {
		lines, ok := Lines(a, b, 200)
		if !ok {
			return
		}
		ga, gb := apply(lines)
		if strings.Join(ga, "\n") != strings.Join(split(a), "\n") || strings.Join(gb, "\n") != strings.Join(split(b), "\n") {
			t.Fatalf("diff does not rebuild the texts")
		}
		for _, h := range Hunks(lines, 3) {
			if len(h.Lines) == 0 {
				t.Fatal("empty hunk")
			}
		}
	})
}
