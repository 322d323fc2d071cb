package network

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/agentrun/agent/sandbox/local/network/egress"
	"github.com/agentrun/agent/sandbox/netpolicy"
)

// rules is the data of one sandbox's nftables table.
type rules struct {
	Table, HostIf         string
	Gateway, Address      netip.Addr
	Internet, Allow       bool
	ProxyPort             int
	Never, Special, CIDRs []netip.Prefix
}

func rulesFor(st *state, pol netpolicy.Policy, pool netip.Prefix, host hostNets) rules {
	never := append(netpolicy.Never(), host.Addrs...)
	special := append(netpolicy.Special(), host.Nets...)
	var cidrs []netip.Prefix
	for _, c := range pol.CIDRs {
		if c.Addr().Is4() {
			cidrs = append(cidrs, c)
		}
	}
	return rules{
		Table: tableName(st.ID), HostIf: st.HostIf, Gateway: st.Gateway, Address: st.Address,
		Internet: pol.Mode == netpolicy.Internet, Allow: pol.Mode == netpolicy.Allow, ProxyPort: ProxyPort,
		Never: mergePrefixes(never), Special: mergePrefixes(special), CIDRs: mergePrefixes(cidrs),
	}
}

// mergePrefixes drops prefixes contained in another of the list (nftables refuses overlapping
// intervals in one set).
func mergePrefixes(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for i, p := range ps {
		p = p.Masked()
		covered := false
		for j, q := range ps {
			q = q.Masked()
			if i != j && q.Bits() <= p.Bits() && q.Contains(p.Addr()) && (q != p || j < i) {
				covered = true
				break
			}
		}
		if !covered && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// The table. Every rule is keyed by the host end of the sandbox's link; packets of other
// interfaces pass through untouched. Chains:
//   - prerouting (nat): allow-lists send the sandbox's TCP, except to allowed CIDRs, to the
//     egress proxy.
//   - input: from the sandbox the host accepts only DNS, and the proxy, on the sandbox's own
//     gateway address; every other host address and service is refused.
//   - forward: the sandbox's own address only (no spoofing), never IPv6, never the ranges no
//     sandbox reaches (loopback, link-local with the metadata address, multicast, the host's
//     addresses, the sandbox pool); then internet refuses private and special ranges and the
//     host's networks and accepts the rest, an allow-list accepts its CIDRs. Nothing enters the
//     sandbox but replies.
//   - postrouting (nat): masquerade what leaves.
//
// Refused packets are counted and their (address, protocol, port) kept in a bounded set, for
// the task's results.
var tableTmpl = template.Must(template.New("t").Funcs(template.FuncMap{"join": joinPrefixes}).Parse(`
table inet {{.Table}} {
	counter refused_packets { }
	set refused {
		type ipv4_addr . inet_proto . inet_service
		size 1024
		flags dynamic,timeout
		timeout 1h
	}
	set never {
		type ipv4_addr
		flags interval
		elements = { {{join .Never}} }
	}
	set special {
		type ipv4_addr
		flags interval
		elements = { {{join .Special}} }
	}
{{- if .CIDRs}}
	set allowed {
		type ipv4_addr
		flags interval
		elements = { {{join .CIDRs}} }
	}
{{- end}}
	chain refuse {
		counter name refused_packets
		meta l4proto { tcp, udp } update @refused { ip daddr . meta l4proto . th dport }
		meta l4proto tcp reject with tcp reset
		reject with icmpx type admin-prohibited
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
{{- if .Allow}}
		iifname "{{.HostIf}}" ip daddr {{.Gateway}} return
{{- if .CIDRs}}
		iifname "{{.HostIf}}" ip daddr @allowed ip daddr != @never return
{{- end}}
		iifname "{{.HostIf}}" meta l4proto tcp dnat ip to {{.Gateway}}:{{.ProxyPort}}
{{- end}}
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "{{.HostIf}}" meta nfproto ipv6 drop
		iifname "{{.HostIf}}" ip saddr != {{.Address}} drop
		iifname "{{.HostIf}}" ip daddr {{.Gateway}} meta l4proto { tcp, udp } th dport 53 accept
{{- if .Allow}}
		iifname "{{.HostIf}}" ip daddr {{.Gateway}} tcp dport {{.ProxyPort}} accept
{{- end}}
		iifname "{{.HostIf}}" goto refuse
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "{{.HostIf}}" meta nfproto ipv6 drop
		iifname "{{.HostIf}}" ip saddr != {{.Address}} drop
		iifname "{{.HostIf}}" ip daddr @never goto refuse
{{- if .Internet}}
		iifname "{{.HostIf}}" ip daddr @special goto refuse
		iifname "{{.HostIf}}" accept
{{- end}}
{{- if .CIDRs}}
		iifname "{{.HostIf}}" ip daddr @allowed accept
{{- end}}
		iifname "{{.HostIf}}" goto refuse
		oifname "{{.HostIf}}" ct state established,related accept
		oifname "{{.HostIf}}" drop
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr {{.Address}} oifname != "{{.HostIf}}" masquerade
	}
}
`))

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func (r rules) text() (string, error) {
	var b bytes.Buffer
	if err := tableTmpl.Execute(&b, r); err != nil {
		return "", err
	}
	return b.String(), nil
}

// nft runs the nft command with stdin, bounded in time.
func nft(ctx context.Context, stdin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nft", args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if len(msg) > 2048 {
			msg = msg[:2048]
		}
		return nil, fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return out.Bytes(), nil
}

// applyTable loads the table in one transaction.
func applyTable(ctx context.Context, r rules) error {
	txt, err := r.text()
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("sandbox network modes need nftables (apt-get install nftables): %w", err)
	}
	if _, err := nft(ctx, txt, "-f", "-"); err != nil {
		return fmt.Errorf("loading the sandbox's firewall: %w", err)
	}
	return nil
}

// deleteTable removes a table; a missing one is not an error.
func deleteTable(ctx context.Context, name string) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil
	}
	_, err := nft(ctx, "", "delete", "table", "inet", name)
	if err != nil && (strings.Contains(err.Error(), "No such file") || strings.Contains(err.Error(), "does not exist")) {
		return nil
	}
	return err
}

// listTables lists the inet tables.
func listTables(ctx context.Context) []string {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil
	}
	out, err := nft(ctx, "", "list", "tables", "inet")
	if err != nil {
		return nil
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "table" && f[1] == "inet" {
			names = append(names, f[2])
		}
	}
	return names
}

// readRefused reads the refused-packet counter and set of a table.
func readRefused(ctx context.Context, table string) (int64, []egress.Event, error) {
	if !slices.Contains(listTables(ctx), table) {
		return 0, nil, nil
	}
	out, err := nft(ctx, "", "-j", "list", "table", "inet", table)
	if err != nil {
		return 0, nil, err
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, nil, fmt.Errorf("reading nft output: %w", err)
	}
	var packets int64
	var evs []egress.Event
	for _, obj := range doc.Nftables {
		if raw, ok := obj["counter"]; ok {
			var c struct {
				Name    string `json:"name"`
				Packets int64  `json:"packets"`
			}
			if json.Unmarshal(raw, &c) == nil && c.Name == "refused_packets" {
				packets = c.Packets
			}
		}
		if raw, ok := obj["set"]; ok {
			var s struct {
				Name string            `json:"name"`
				Elem []json.RawMessage `json:"elem"`
			}
			if json.Unmarshal(raw, &s) != nil || s.Name != "refused" {
				continue
			}
			for _, e := range s.Elem {
				if ev, ok := parseRefusedElem(e); ok {
					evs = append(evs, ev)
				}
			}
		}
	}
	return packets, evs, nil
}

// parseRefusedElem reads one element of the refused set: a concatenation of address, protocol
// and port, possibly wrapped in {"elem": {"val": …}}.
func parseRefusedElem(raw json.RawMessage) (egress.Event, bool) {
	var wrapped struct {
		Elem struct {
			Val json.RawMessage `json:"val"`
		} `json:"elem"`
	}
	if json.Unmarshal(raw, &wrapped) == nil && len(wrapped.Elem.Val) > 0 {
		raw = wrapped.Elem.Val
	}
	var c struct {
		Concat []any `json:"concat"`
	}
	if json.Unmarshal(raw, &c) != nil || len(c.Concat) != 3 {
		return egress.Event{}, false
	}
	addr, _ := c.Concat[0].(string)
	proto := fmt.Sprint(c.Concat[1])
	port := fmt.Sprint(c.Concat[2])
	if f, ok := c.Concat[2].(float64); ok {
		port = fmt.Sprint(int(f))
	}
	if _, err := netip.ParseAddr(addr); err != nil {
		return egress.Event{}, false
	}
	return egress.Event{Kind: "packet", Addr: net.JoinHostPort(addr, port), Proto: proto,
		Reason: "refused by the sandbox's firewall"}, true
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
