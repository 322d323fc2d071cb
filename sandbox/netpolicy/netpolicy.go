// Package netpolicy is a sandbox's egress policy as data: the mode (none, internet, or an
// allow-list of domains and address ranges), the address ranges no sandbox may ever reach, and the
// name and address matching every enforcement point (the nftables rules, the DNS filter, the
// egress proxy) shares. It has no side effects and needs no privileges.
package netpolicy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Mode is how much network a sandbox gets.
type Mode string

// Modes.
const (
	// None: a network namespace with loopback only.
	None Mode = "none"
	// Internet: public addresses; the host, private and special ranges and other sandboxes are
	// refused. DNS is answered by a resolver outside the sandbox.
	Internet Mode = "internet"
	// Allow: only the listed domains (through the DNS filter and the egress proxy) and CIDRs.
	Allow Mode = "allow"
)

// Policy is a parsed network policy.
type Policy struct {
	Mode Mode
	// Domains are lower-case names without a trailing dot; "*.example.org" matches every
	// subdomain of example.org but not example.org itself.
	Domains []string
	// CIDRs are allowed address ranges (masked).
	CIDRs []netip.Prefix
}

// MaxEntries bounds an allow-list.
const MaxEntries = 256

// Parse reads the form the CLI flag and sandbox records use: "" or "none", "internet", or
// "allow:ENTRY[,ENTRY…]" where an entry is a domain, "*.domain", an IP address or a CIDR.
func Parse(s string) (Policy, error) {
	switch s {
	case "", string(None):
		return Policy{Mode: None}, nil
	case string(Internet):
		return Policy{Mode: Internet}, nil
	}
	rest, ok := strings.CutPrefix(s, "allow:")
	if !ok {
		return Policy{}, fmt.Errorf("network mode %q: want none, internet or allow:DOMAIN,CIDR,…", clip(s))
	}
	p := Policy{Mode: Allow}
	for _, e := range strings.Split(rest, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if len(p.Domains)+len(p.CIDRs) >= MaxEntries {
			return Policy{}, fmt.Errorf("allow-list has more than %d entries", MaxEntries)
		}
		if strings.Contains(e, "/") {
			pre, err := netip.ParsePrefix(e)
			if err != nil {
				return Policy{}, fmt.Errorf("allow-list entry %q: %w", clip(e), err)
			}
			if pre.Bits() == 0 {
				return Policy{}, fmt.Errorf("allow-list entry %q allows every address: use internet", clip(e))
			}
			p.addPrefix(pre.Masked())
			continue
		}
		if a, err := netip.ParseAddr(e); err == nil {
			if a.Zone() != "" {
				return Policy{}, fmt.Errorf("allow-list entry %q: zones are not allowed", clip(e))
			}
			a = a.Unmap()
			p.addPrefix(netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		name, err := normalizeEntry(e)
		if err != nil {
			return Policy{}, err
		}
		if !slices.Contains(p.Domains, name) {
			p.Domains = append(p.Domains, name)
		}
	}
	if len(p.Domains)+len(p.CIDRs) == 0 {
		return Policy{}, fmt.Errorf("empty allow-list: use none for no network")
	}
	return p, nil
}

func (p *Policy) addPrefix(pre netip.Prefix) {
	if !slices.Contains(p.CIDRs, pre) {
		p.CIDRs = append(p.CIDRs, pre)
	}
}

// normalizeEntry validates a domain entry and returns its canonical form.
func normalizeEntry(e string) (string, error) {
	name := strings.TrimSuffix(strings.ToLower(e), ".")
	host, wildcard := strings.CutPrefix(name, "*.")
	// A top-level label is never all digits (RFC 3696): "1.2.3.4." is an address written
	// with a trailing dot, not a domain, and must not round-trip into one.
	if !ValidName(host) || !strings.Contains(host, ".") || strings.Trim(host[strings.LastIndexByte(host, '.')+1:], "0123456789") == "" {
		return "", fmt.Errorf("allow-list entry %q: want a domain like example.com or *.example.com, an address or a CIDR", clip(e))
	}
	if wildcard {
		return "*." + host, nil
	}
	return host, nil
}

// ValidName tells whether name (lower-case, no trailing dot) is a syntactically valid host name:
// ASCII letters, digits and inner hyphens, labels of 1 to 63 characters, at most 253 in all.
func ValidName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// String formats the policy as Parse reads it.
func (p Policy) String() string {
	if p.Mode != Allow {
		if p.Mode == "" {
			return string(None)
		}
		return string(p.Mode)
	}
	parts := slices.Clone(p.Domains)
	for _, c := range p.CIDRs {
		parts = append(parts, c.String())
	}
	return "allow:" + strings.Join(parts, ",")
}

// Networked tells whether the policy gives the sandbox an interface beyond loopback.
func (p Policy) Networked() bool { return p.Mode == Internet || p.Mode == Allow }

// CanonicalName lower-cases a DNS name and strips its trailing dot; ok is false when it is not a
// valid host name.
func CanonicalName(name string) (string, bool) {
	n := strings.TrimSuffix(strings.ToLower(name), ".")
	return n, ValidName(n)
}

// AllowsName tells whether the policy lets the sandbox resolve and connect to name. Internet
// allows every valid name; None allows none.
func (p Policy) AllowsName(name string) bool {
	n, ok := CanonicalName(name)
	if !ok {
		return false
	}
	switch p.Mode {
	case Internet:
		return true
	case Allow:
		for _, d := range p.Domains {
			if suffix, wild := strings.CutPrefix(d, "*."); wild {
				if strings.HasSuffix(n, "."+suffix) {
					return true
				}
			} else if n == d {
				return true
			}
		}
	}
	return false
}

// AllowsAddr tells whether a is inside one of the allow-list's CIDRs.
func (p Policy) AllowsAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, c := range p.CIDRs {
		if c.Contains(a) {
			return true
		}
	}
	return false
}

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Never lists the IPv4 ranges no sandbox reaches in any mode, whatever its allow-list says:
// "this network", loopback, link-local (with the cloud metadata address 169.254.169.254),
// multicast, reserved and broadcast. The host's own addresses and the sandbox address pool are
// added at run time.
var never4 = mustPrefixes(
	"0.0.0.0/8",
	"127.0.0.0/8",
	"169.254.0.0/16",
	"224.0.0.0/4",
	"240.0.0.0/4",
)

// Special lists the IPv4 ranges the internet mode refuses beyond Never: private networks
// (RFC 1918), shared address space (CGNAT, RFC 6598), IETF protocol assignments, the 6to4 relay
// anycast range and benchmarking networks. An allow-list CIDR may name them explicitly.
// The documentation ranges TEST-NET-2 and -3 are not listed: they are never routed publicly, and
// the security battery uses them as its stand-in for the internet.
var special4 = mustPrefixes(
	"10.0.0.0/8",
	"100.64.0.0/10",
	"172.16.0.0/12",
	"192.0.0.0/24",
	"192.88.99.0/24",
	"192.168.0.0/16",
	"198.18.0.0/15",
)

// Never returns the IPv4 ranges refused in every mode (a copy).
func Never() []netip.Prefix { return slices.Clone(never4) }

// Special returns the IPv4 ranges the internet mode refuses on top of Never (a copy).
func Special() []netip.Prefix { return slices.Clone(special4) }

// IsNever tells whether a falls in a range refused in every mode. Every IPv6 address counts:
// sandboxes get no IPv6 beyond loopback.
func IsNever(a netip.Addr) bool {
	a = a.Unmap()
	if !a.Is4() {
		return true
	}
	return inAny(a, never4)
}

// IsSpecial tells whether a falls in a range the internet mode refuses (Never included).
func IsSpecial(a netip.Addr) bool {
	a = a.Unmap()
	return IsNever(a) || inAny(a, special4)
}

func inAny(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
