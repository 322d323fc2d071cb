package spec

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxDuration bounds every duration in a spec: nothing a task does should need a week.
const MaxDuration = 7 * 24 * time.Hour

// Duration is a positive length of time written as Go writes durations: 90s, 10m, 1h30m, 500ms.
// A bare number is refused because its unit would be a guess.
type Duration time.Duration

// ParseDuration parses a spec duration: a positive Go duration no longer than MaxDuration.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty duration: want a number and a unit like 90s, 10m or 1h30m")
	}
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return 0, fmt.Errorf("duration %q has no unit: write e.g. %ss or %sm", clip(s, 40), t, t)
	}
	v, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a number and a unit (ms, s, m, h) like 90s, 10m or 1h30m", clip(s, 40))
	}
	if v <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", clip(s, 40))
	}
	if v > MaxDuration {
		return 0, fmt.Errorf("duration %q is longer than the maximum %s", clip(s, 40), MaxDuration)
	}
	return v, nil
}

func (x *Duration) unmarshalYAML(d *decoder, n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float") {
		d.typeError(n, "a duration like 90s, 10m or 1h30m")
		return false
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		d.errorf(n, "%v", err)
		return false
	}
	*x = Duration(v)
	return true
}

// D returns the value as a time.Duration.
func (x Duration) D() time.Duration { return time.Duration(x) }

// String formats the duration as Go does.
func (x Duration) String() string { return time.Duration(x).String() }

// MarshalJSON writes the duration as a string ("10m0s").
func (x Duration) MarshalJSON() ([]byte, error) { return json.Marshal(x.String()) }

// MaxSize bounds every size in a spec (1 PiB).
const MaxSize = 1 << 50

// Size is a positive number of bytes: a plain integer, or a number with a unit. Binary units
// (KiB, MiB, GiB, TiB, or Ki, Mi, Gi, Ti) are powers of 1024; decimal units (kB, MB, GB, TB) are
// powers of 1000. Single letters (K, M, G) are refused: tools disagree on what they mean.
type Size int64

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	"ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

// ParseSize parses a spec size such as 512MiB, 1.5GiB, 2GB or 1048576 (bytes).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	m := sizeRE.FindStringSubmatch(t)
	if m == nil {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes or a number and a unit like 512MiB, 1GiB or 2GB", clip(s, 40))
	}
	unit := strings.ToLower(m[2])
	mult, ok := sizeUnits[unit]
	if !ok {
		if len(unit) == 1 && strings.Contains("kmgt", unit) {
			u := strings.ToUpper(unit)
			return 0, fmt.Errorf("ambiguous size unit %q in %q: write %siB (powers of 1024) or %sB (powers of 1000)", m[2], clip(s, 40), u, u)
		}
		return 0, fmt.Errorf("unknown size unit %q in %q: use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB", clip(m[2], 20), clip(s, 40))
	}
	num, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %v", clip(s, 40), err)
	}
	v := num * mult
	if v > MaxSize || math.IsInf(v, 0) {
		return 0, fmt.Errorf("size %q is larger than the maximum 1PiB", clip(s, 40))
	}
	if v < 1 {
		return 0, fmt.Errorf("size %q must be at least one byte", clip(s, 40))
	}
	return int64(v), nil
}

func (x *Size) unmarshalYAML(d *decoder, n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float") {
		d.typeError(n, "a size like 512MiB, 1GiB or a number of bytes")
		return false
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		d.errorf(n, "%v", err)
		return false
	}
	*x = Size(v)
	return true
}

// String formats the size as FormatSize does.
func (x Size) String() string { return FormatSize(int64(x)) }

// FormatSize formats bytes with the unit, binary or decimal, that divides them exactly into the
// smallest number: 1073741824 is 1GiB, 2000000000 is 2GB, 1000 is 1kB, 1023 stays 1023.
func FormatSize(v int64) string {
	best, bestN := "", v
	for _, u := range []struct {
		name string
		mult int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"kB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}} {
		if v >= u.mult && v%u.mult == 0 && v/u.mult < bestN {
			best, bestN = u.name, v/u.mult
		}
	}
	return strconv.FormatInt(bestN, 10) + best
}

// Keep says which task sandboxes are kept (paused) after a run for inspection.
type Keep string

// Keep values.
const (
	KeepNone   Keep = "none"   // reclaim every sandbox (the default)
	KeepFailed Keep = "failed" // keep the sandboxes of tasks that failed or errored
	KeepAll    Keep = "all"    // keep every sandbox
)

// ParseKeep parses none, failed or all.
func ParseKeep(s string) (Keep, error) {
	switch k := Keep(s); k {
	case KeepNone, KeepFailed, KeepAll:
		return k, nil
	}
	return "", fmt.Errorf("invalid keep %q: want none, failed or all", clip(s, 40))
}

func (x *Keep) unmarshalYAML(d *decoder, n *yaml.Node) bool {
	s, ok := d.scalarString(n)
	if !ok {
		return false
	}
	k, err := ParseKeep(s)
	if err != nil {
		d.errorf(n, "%v", err)
		return false
	}
	*x = k
	return true
}

// Backend names the sandbox backend a task runs on.
type Backend string

// Backends.
const (
	BackendLocal  Backend = "local"  // OCI sandboxes on this machine
	BackendE2B    Backend = "e2b"    // E2B's cloud, or a server with its API (agent serve)
	BackendNovita Backend = "novita" // Novita Agent Sandbox, or a server with its API
)

// Backends lists the sandbox backends.
var Backends = []Backend{BackendLocal, BackendE2B, BackendNovita}

// ParseBackend parses local, e2b or novita.
func ParseBackend(s string) (Backend, error) {
	for _, b := range Backends {
		if Backend(s) == b {
			return b, nil
		}
	}
	return "", fmt.Errorf("invalid sandbox %q: want local, e2b or novita", clip(s, 40))
}

func (x *Backend) unmarshalYAML(d *decoder, n *yaml.Node) bool {
	s, ok := d.scalarString(n)
	if !ok {
		return false
	}
	b, err := ParseBackend(s)
	if err != nil {
		d.errorf(n, "%v", err)
		return false
	}
	*x = b
	return true
}

// Runtime names the OCI runtime a local sandbox runs under.
type Runtime string

// Runtimes (the names sandbox/local knows).
const (
	RuntimeRunc  Runtime = "runc"  // the default
	RuntimeCrun  Runtime = "crun"  // refuses cgroup hybrid hosts with v2 controllers (agent doctor)
	RuntimeRunsc Runtime = "runsc" // gVisor: its own kernel; networked modes need a recent runsc
)

// Runtimes lists the OCI runtimes, default first.
var Runtimes = []Runtime{RuntimeRunc, RuntimeCrun, RuntimeRunsc}

// ParseRuntime parses runc, crun or runsc.
func ParseRuntime(s string) (Runtime, error) {
	for _, r := range Runtimes {
		if Runtime(s) == r {
			return r, nil
		}
	}
	return "", fmt.Errorf("invalid runtime %q: want runc, crun or runsc", clip(s, 40))
}

func (x *Runtime) unmarshalYAML(d *decoder, n *yaml.Node) bool {
	s, ok := d.scalarString(n)
	if !ok {
		return false
	}
	r, err := ParseRuntime(s)
	if err != nil {
		d.errorf(n, "%v", err)
		return false
	}
	*x = r
	return true
}

// Pattern is a regular expression (Go RE2 syntax) compiled when the spec is loaded.
type Pattern struct {
	*regexp.Regexp
}

// CompilePattern compiles a spec regular expression.
func CompilePattern(s string) (*Pattern, error) {
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression: %v", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return &Pattern{re}, nil
}

func (x *Pattern) unmarshalYAML(d *decoder, n *yaml.Node) bool {
	s, ok := d.scalarString(n)
	if !ok {
		return false
	}
	p, err := CompilePattern(s)
	if err != nil {
		d.errorf(n, "%v", err)
		return false
	}
	*x = *p
	return true
}

// MarshalJSON writes the pattern's source.
func (x Pattern) MarshalJSON() ([]byte, error) {
	if x.Regexp == nil {
		return []byte("null"), nil
	}
	return json.Marshal(x.String())
}

// Mode is a file's permission bits, written in octal: 644, 0755 or 0o755.
type Mode uint32

// ParseMode parses octal permission bits; setuid, setgid and sticky bits are refused.
func ParseMode(s string) (Mode, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0o"), "0O")
	v, err := strconv.ParseUint(t, 8, 32)
	if err != nil || t == "" {
		return 0, fmt.Errorf("invalid mode %q: want octal permission bits like 644 or 0755", clip(s, 20))
	}
	if v > 0o777 {
		return 0, fmt.Errorf("mode %q: only permission bits (at most 0777) may be set", clip(s, 20))
	}
	return Mode(v), nil
}

func (x *Mode) unmarshalYAML(d *decoder, n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int") {
		d.typeError(n, "octal permission bits like 0644")
		return false
	}
	m, err := ParseMode(n.Value)
	if err != nil {
		d.errorf(n, "%v", err)
		return false
	}
	*x = m
	return true
}

// String formats the mode as four octal digits.
func (x Mode) String() string { return fmt.Sprintf("%04o", uint32(x)) }

// MarshalJSON writes the mode as an octal string ("0644").
func (x Mode) MarshalJSON() ([]byte, error) { return json.Marshal(x.String()) }

// Env is a set of environment variables. Values may be written as strings, numbers or booleans;
// the value is the text as written (PYTHONUNBUFFERED: 1 sets "1").
type Env map[string]string

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (x *Env) unmarshalYAML(d *decoder, n *yaml.Node) bool {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, "a mapping of variable names to values")
		return false
	}
	out := Env{}
	seen := map[string]*yaml.Node{}
	ok := true
	for _, p := range d.pairs(n) {
		if !d.checkKey(p.key, seen) {
			ok = false
			continue
		}
		k := p.key.Value
		if !envNameRE.MatchString(k) || len(k) > 256 {
			d.errorf(p.key, "invalid variable name %q: want letters, digits and _ (not starting with a digit)", clip(k, 60))
			ok = false
			continue
		}
		v := d.deref(p.val)
		if v.Kind != yaml.ScalarNode || (v.Tag != "!!str" && v.Tag != "!!int" && v.Tag != "!!float" && v.Tag != "!!bool") {
			d.withField(k, func() { d.typeError(v, `a value (use "" for an empty one)`) })
			ok = false
			continue
		}
		if strings.ContainsRune(v.Value, 0) {
			d.withField(k, func() { d.errorf(v, "value contains a NUL byte") })
			ok = false
			continue
		}
		out[k] = v.Value
	}
	*x = out
	return ok
}

// NetworkMode is how much network a sandbox gets.
type NetworkMode string

// Network modes.
const (
	NetworkNone     NetworkMode = "none"     // loopback only (the default)
	NetworkInternet NetworkMode = "internet" // public addresses; host, private and special ranges blocked
	NetworkAllow    NetworkMode = "allow"    // only the listed domains and address ranges
)

// Network is a sandbox's network policy: `none`, `internet`, or `{allow: [...]}` where each entry is
// a domain (example.com), a wildcard covering its subdomains (*.example.org), an IP address or a
// CIDR range (203.0.113.0/24).
type Network struct {
	Mode NetworkMode `json:"mode"`
	// Domains are lower-case ASCII names; a leading "*." matches every subdomain (not the name itself).
	Domains []string `json:"domains,omitempty"`
	// CIDRs are the allowed address ranges, masked; single addresses are /32 or /128 prefixes.
	CIDRs []netip.Prefix `json:"cidrs,omitempty"`
}

// String formats the policy as the CLI flag accepts it.
func (x Network) String() string {
	if x.Mode != NetworkAllow {
		return string(x.Mode)
	}
	parts := append([]string(nil), x.Domains...)
	for _, c := range x.CIDRs {
		parts = append(parts, c.String())
	}
	return "allow:" + strings.Join(parts, ",")
}

// ParseNetwork parses the CLI form: none, internet, or allow:ENTRY[,ENTRY...].
func ParseNetwork(s string) (Network, error) {
	switch s {
	case string(NetworkNone), string(NetworkInternet):
		return Network{Mode: NetworkMode(s)}, nil
	}
	rest, ok := strings.CutPrefix(s, "allow:")
	if !ok {
		return Network{}, fmt.Errorf("invalid network %q: want none, internet or allow:DOMAIN,CIDR,…", clip(s, 60))
	}
	n := Network{Mode: NetworkAllow}
	for _, e := range strings.Split(rest, ",") {
		if err := n.add(strings.TrimSpace(e)); err != nil {
			return Network{}, err
		}
	}
	if len(n.Domains)+len(n.CIDRs) == 0 {
		return Network{}, fmt.Errorf("empty allow list: use none for no network")
	}
	return n, nil
}

var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// add validates one allow-list entry and appends it unless already present.
func (x *Network) add(e string) error {
	if e == "" {
		return fmt.Errorf("empty allow-list entry")
	}
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return fmt.Errorf("invalid CIDR %q: want e.g. 203.0.113.0/24 or 2001:db8::/32", clip(e, 60))
		}
		if p.Bits() == 0 {
			return fmt.Errorf("%q allows every address: use network: internet", e)
		}
		return x.addPrefix(p.Masked())
	}
	if a, err := netip.ParseAddr(e); err == nil {
		if a.Zone() != "" {
			return fmt.Errorf("address %q: zones are not allowed", clip(e, 60))
		}
		return x.addPrefix(netip.PrefixFrom(a, a.BitLen()))
	}
	name := strings.TrimSuffix(strings.ToLower(e), ".")
	if name == "*" {
		return fmt.Errorf(`"*" allows every domain: use network: internet`)
	}
	for _, r := range name {
		if r > 0x7f {
			return fmt.Errorf("domain %q: write internationalized names in their ASCII form (xn--…)", clip(e, 60))
		}
	}
	host, wildcard := strings.CutPrefix(name, "*.")
	if len(host) > 253 {
		return fmt.Errorf("domain %q is longer than 253 characters", clip(e, 60))
	}
	labels := strings.Split(host, ".")
	if len(labels) < 2 {
		return fmt.Errorf("domain %q: want a fully qualified name like example.com", clip(e, 60))
	}
	for _, l := range labels {
		if !labelRE.MatchString(l) {
			if strings.Contains(l, "*") {
				return fmt.Errorf("domain %q: a wildcard may only be the whole first label (*.example.com)", clip(e, 60))
			}
			return fmt.Errorf("invalid domain %q: labels are letters, digits and inner hyphens, 1 to 63 characters", clip(e, 60))
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("domain %q: a top-level domain is never all digits (write IP addresses without a trailing dot)", clip(e, 60))
	}
	if wildcard {
		host = "*." + host
	}
	for _, d := range x.Domains {
		if d == host {
			return nil
		}
	}
	x.Domains = append(x.Domains, host)
	return nil
}

func (x *Network) addPrefix(p netip.Prefix) error {
	for _, c := range x.CIDRs {
		if c == p {
			return nil
		}
	}
	x.CIDRs = append(x.CIDRs, p)
	return nil
}

func (x *Network) unmarshalYAML(d *decoder, n *yaml.Node) bool {
	const want = "none, internet or {allow: [domains and CIDRs]}"
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag != "!!str" {
			d.typeError(n, want)
			return false
		}
		switch n.Value {
		case string(NetworkNone), string(NetworkInternet):
			*x = Network{Mode: NetworkMode(n.Value)}
			return true
		}
		hint := ""
		if strings.Contains(n.Value, ".") || strings.Contains(n.Value, ":") {
			hint = fmt.Sprintf("; to allow only it, write network: {allow: [%s]}", clip(n.Value, 60))
		}
		d.errorf(n, "invalid network %q: want %s%s", clip(n.Value, 60), want, hint)
		return false
	case yaml.MappingNode:
		out := Network{Mode: NetworkAllow}
		seen := map[string]*yaml.Node{}
		ok, found := true, false
		for _, p := range d.pairs(n) {
			if !d.checkKey(p.key, seen) {
				ok = false
				continue
			}
			if p.key.Value != "allow" {
				d.errorf(p.key, "unknown field %q; a network policy has only allow", clip(p.key.Value, 60))
				ok = false
				continue
			}
			found = true
			d.withField("allow", func() {
				list := d.deref(p.val)
				if list.Kind != yaml.SequenceNode {
					d.typeError(list, "a list of domains and CIDRs")
					ok = false
					return
				}
				if len(list.Content) == 0 {
					d.errorf(list, "empty allow list: use network: none for no network")
					ok = false
					return
				}
				for i, item := range list.Content {
					item = d.deref(item)
					d.withField(fmt.Sprintf("[%d]", i), func() {
						s, sok := d.scalarString(item)
						if !sok {
							ok = false
							return
						}
						if err := out.add(strings.TrimSpace(s)); err != nil {
							d.errorf(item, "%v", err)
							ok = false
						}
					})
				}
			})
		}
		if !found && ok {
			d.errorf(n, "a network policy mapping needs allow: [domains and CIDRs]")
			return false
		}
		if ok {
			*x = out
		}
		return ok
	}
	d.typeError(n, want)
	return false
}

// The MarshalYAML methods write values in the form the decoder reads, so a SpecFile or Config can
// be written back as YAML (e.g. to save a one-off task as a spec) and parsed to the same thing.

// MarshalYAML writes the duration as Go formats it ("10m0s").
func (x Duration) MarshalYAML() (any, error) { return x.String(), nil }

// MarshalYAML writes the size as FormatSize does.
func (x Size) MarshalYAML() (any, error) { return x.String(), nil }

// MarshalYAML writes the pattern's source.
func (x Pattern) MarshalYAML() (any, error) {
	if x.Regexp == nil {
		return nil, nil
	}
	return x.String(), nil
}

// MarshalYAML writes the mode as an octal string ("0755").
func (x Mode) MarshalYAML() (any, error) { return x.String(), nil }

// MarshalYAML writes none, internet or {allow: [...]}.
func (x Network) MarshalYAML() (any, error) {
	if x.Mode != NetworkAllow {
		return string(x.Mode), nil
	}
	allow := append([]string(nil), x.Domains...)
	for _, c := range x.CIDRs {
		allow = append(allow, c.String())
	}
	return map[string][]string{"allow": allow}, nil
}
