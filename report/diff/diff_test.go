package diff

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// apply rebuilds both texts from a diff.
func apply(lines []Line) (a, b []string) {
	for _, l := range lines {
		if l.Op != Insert {
			a = append(a, l.Text)
		}
		if l.Op != Delete {
			b = append(b, l.Text)
		}
	}
	return
}

func edits(lines []Line) int {
	n := 0
	for _, l := range lines {
		if l.Op != Equal {
			n++
		}
	}
	return n
}

// lcs is the length of a longest common subsequence (quadratic; for checking minimality).
func lcs(a, b []string) int {
	prev := make([]int, len(b)+1)
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		for j := 1; j <= len(b); j++ {
			switch {
			case a[i-1] == b[j-1]:
				cur[j] = prev[j-1] + 1
			case prev[j] >= cur[j-1]:
				cur[j] = prev[j]
			default:
				cur[j] = cur[j-1]
			}
		}
		prev = cur
	}
	return prev[len(b)]
}

func TestLinesRandomMinimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"a", "b", "c", "d", ""}
	gen := func() []string {
		n := rng.IntN(30)
		out := make([]string, n)
		for i := range out {
			out[i] = words[rng.IntN(len(words))]
		}
		return out
	}
	for iter := 0; iter < 2000; iter++ {
		a, b := gen(), gen()
		at, bt := strings.Join(a, "\n"), strings.Join(b, "\n")
		lines, ok := Lines(at, bt, 0)
		if !ok {
			t.Fatal("diff refused")
		}
		ga, gb := apply(lines)
		if strings.Join(ga, "\n") != strings.Join(split(at), "\n") || strings.Join(gb, "\n") != strings.Join(split(bt), "\n") {
			t.Fatalf("diff does not rebuild the texts:\na=%q\nb=%q\n%v", a, b, lines)
		}
		as, bs := split(at), split(bt)
		if want := len(as) + len(bs) - 2*lcs(as, bs); edits(lines) != want {
			t.Fatalf("diff has %d edits, the minimum is %d", edits(lines), want)
		}
	}
}

func TestMaxEdits(t *testing.T) {
	var a, b strings.Builder
	for i := 0; i < 500; i++ {
		a.WriteString("x\n")
		b.WriteString("y\n")
	}
	if _, ok := Lines(a.String(), b.String(), 100); ok {
		t.Fatal("a diff of 1000 edits accepted under a bound of 100")
	}
	if l, ok := Lines(a.String(), b.String(), 1000); !ok || edits(l) != 1000 {
		t.Fatal("a diff of 1000 edits refused under a bound of 1000")
	}
}

// TestUnifiedMatchesGNUDiff checks hunks and headers against diff(1) -U3.
func TestUnifiedMatchesGNUDiff(t *testing.T) {
	gnu, err := exec.LookPath("diff")
	if err != nil {
		t.Skip("diff(1) not installed")
	}
	var a, b []string
	for i := 1; i <= 60; i++ {
		a = append(a, "line "+string(rune('A'+i%26)))
	}
	b = append(b, a...)
	b[2] = "changed 3"
	b = append(b[:20], append([]string{"inserted 1", "inserted 2"}, b[20:]...)...)
	b = append(b[:40], b[45:]...)
	b = append(b, "tail")
	at, bt := strings.Join(a, "\n")+"\n", strings.Join(b, "\n")+"\n"
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte(at), 0o644)
	os.WriteFile(filepath.Join(dir, "b"), []byte(bt), 0o644)
	out, _ := exec.Command(gnu, "-U3", "--label", "a", "--label", "b", filepath.Join(dir, "a"), filepath.Join(dir, "b")).Output()
	lines, ok := Lines(at, bt, 0)
	if !ok {
		t.Fatal("diff refused")
	}
	got := Unified("a", "b", Hunks(lines, 3))
	// Both are minimal; where several minimal scripts exist the line order may differ, so compare
	// the hunk headers and the multiset of changed lines.
	header := func(s string) (hs []string, changed map[string]int) {
		changed = map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			switch {
			case strings.HasPrefix(l, "@@"):
				hs = append(hs, l)
			case strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-"):
				changed[l]++
			}
		}
		return
	}
	gh, gc := header(got)
	wh, wc := header(string(out))
	if strings.Join(gh, "|") != strings.Join(wh, "|") || len(gc) != len(wc) {
		t.Fatalf("got:\n%s\nwant:\n%s", got, out)
	}
	for k, v := range wc {
		if gc[k] != v {
			t.Fatalf("changed line %q: %d, want %d\ngot:\n%s\nwant:\n%s", k, gc[k], v, got, out)
		}
	}
}

func TestEdgeCases(t *testing.T) {
	if l, ok := Lines("", "", 0); !ok || len(l) != 0 {
		t.Fatal("empty diff")
	}
	l, _ := Lines("", "a\nb\n", 0)
	h := Hunks(l, 3)
	if len(h) != 1 || h[0].Header() != "@@ -0,0 +1,2 @@" {
		t.Fatalf("new file hunks %+v", h)
	}
	l, _ = Lines("same\n", "same\n", 0)
	if len(Hunks(l, 3)) != 0 {
		t.Fatal("hunks for equal texts")
	}
}
