package netpolicy

import (
	"net/netip"
	"testing"
)

func TestParseAndMatch(t *testing.T) {
	p, err := Parse("allow:Example.COM.,*.example.org,203.0.113.0/24,198.51.100.7")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.String(); got != "allow:example.com,*.example.org,203.0.113.0/24,198.51.100.7/32" {
		t.Fatalf("String() = %q", got)
	}
	for name, want := range map[string]bool{
		"example.com": true, "EXAMPLE.com.": true, "www.example.com": false,
		"a.example.org": true, "a.b.example.org": true, "example.org": false, "evilexample.org": false,
		"example.com.evil.test": false, "": false, "a..b": false,
	} {
		if got := p.AllowsName(name); got != want {
			t.Errorf("AllowsName(%q) = %v, want %v", name, got, want)
		}
	}
	if !p.AllowsAddr(netip.MustParseAddr("203.0.113.9")) || p.AllowsAddr(netip.MustParseAddr("203.0.114.1")) {
		t.Error("CIDR matching")
	}
	for _, bad := range []string{"allow:", "allow:0.0.0.0/0", "allow:*", "allow:com", "bogus", "allow:a b.com", "allow:0.0.0.0.", "allow:*.10.0.0.1"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestRanges(t *testing.T) {
	for a, want := range map[string]bool{
		"169.254.169.254": true, "127.0.0.1": true, "224.0.0.1": true, "10.1.2.3": true, "172.16.0.1": true,
		"192.168.1.1": true, "100.64.0.1": true, "::1": true, "fd00::1": true, "fe80::1": true,
		"::ffff:10.0.0.1": true, "203.0.113.10": false, "8.8.8.8": false,
	} {
		if got := IsSpecial(netip.MustParseAddr(a)); got != want {
			t.Errorf("IsSpecial(%s) = %v, want %v", a, got, want)
		}
	}
	if IsNever(netip.MustParseAddr("10.0.0.1")) || !IsNever(netip.MustParseAddr("169.254.169.254")) {
		t.Error("IsNever")
	}
}

// FuzzParse: any string either fails to parse or round-trips through String.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"none", "internet", "allow:example.com", "allow:*.a.b,10.0.0.0/8,::1", "allow:,,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		q, err := Parse(p.String())
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", p.String(), s, err)
		}
		if q.String() != p.String() {
			t.Fatalf("round trip %q → %q", p.String(), q.String())
		}
		_ = p.AllowsName(s)
	})
}
