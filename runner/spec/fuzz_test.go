package spec

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseSpec feeds arbitrary bytes to the spec parser: it must never panic, every error must
// carry a position inside the input, and an accepted spec must survive a YAML round trip.
func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(fullSpec))
	f.Add([]byte("prompt: x\nrepeat: 0\nfoo: 1\nlimits: {timeout: 5}\n"))
	f.Add([]byte("a: &a {cpus: 1}\nprompt: x\nlimits: {<<: [*a, *a]}\n"))
	f.Add([]byte("prompt: x\nnetwork: {allow: [a.com, '*.b.org', 10.0.0.0/8, '::1']}\nsetup: [ls, {run: x, timeout: 1s}]\n"))
	if specs, err := filepath.Glob(repoFile("tasks/examples/*/task.yaml")); err == nil {
		for _, p := range specs {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 64<<10 {
			return
		}
		sf, err := ParseSpec("f.yaml", src)
		if err != nil {
			if !errors.Is(err, ErrSpec) {
				t.Fatalf("error does not match ErrSpec: %v", err)
			}
			lines := bytes.Count(src, []byte("\n")) + 2
			for _, e := range asErrorList(err) {
				if e.Msg == "" || e.Line < 0 || e.Line > lines || e.Column < 0 {
					t.Fatalf("bad error %#v for %q", e, src)
				}
			}
			return
		}
		out, err := FormatSpec(sf)
		if err != nil {
			t.Fatalf("format: %v", err)
		}
		sf2, err := ParseSpec("g.yaml", out)
		if err != nil {
			t.Fatalf("an accepted spec does not parse after marshalling: %v\ninput:\n%s\nmarshalled:\n%s", err, src, out)
		}
		out2, err := FormatSpec(sf2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("marshalling is not a fixed point (%v):\n%s\n---\n%s", err, out, out2)
		}
	})
}

// FuzzParseValues checks the scalar parsers never panic and that what they accept formats back
// to an equal value.
func FuzzParseValues(f *testing.F) {
	for _, s := range []string{"10m", "1h30m", "512MiB", "1.5GiB", "2GB", "allow:a.com,10.0.0.0/8", "0755", "none"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := ParseDuration(s); err == nil {
			if back, err := ParseDuration(d.String()); err != nil || back != d {
				t.Fatalf("duration %q → %v → %v %v", s, d, back, err)
			}
		}
		if n, err := ParseSize(s); err == nil {
			if back, err := ParseSize(FormatSize(n)); err != nil || back != n {
				t.Fatalf("size %q → %d → %q → %d %v", s, n, FormatSize(n), back, err)
			}
		}
		if n, err := ParseNetwork(s); err == nil {
			if back, err := ParseNetwork(n.String()); err != nil || back.String() != n.String() {
				t.Fatalf("network %q → %q → %v", s, n.String(), err)
			}
		}
		if m, err := ParseMode(s); err == nil {
			if back, err := ParseMode(m.String()); err != nil || back != m {
				t.Fatalf("mode %q → %v → %v %v", s, m, back, err)
			}
		}
	})
}
