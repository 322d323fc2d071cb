package main

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentrun/agent/internal/fakenet"
	"github.com/agentrun/agent/report/stats"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/local/network"
)

// netMode is a network policy measured for create latency.
type netMode struct{ name, policy string }

var netModes = []netMode{
	{"none", "none"},
	{"internet", "internet"},
	{"allow-list (2 names, 1 CIDR)", "allow:allowed.test,*.wild.test,203.0.113.0/24"},
}

// netPath is a way from a sandbox to a fake internet host, measured for throughput.
type netPath struct {
	name, policy, url string
	// curlArgs are added to curl's arguments (-k for the fake hosts' self-signed certificate).
	curlArgs string
}

var netPaths = []netPath{
	{"`internet`, by address (veth, kernel forwarding)", "internet", "http://203.0.113.10", ""},
	{"allow-list CIDR (veth, kernel forwarding)", "allow:203.0.113.10/32", "http://203.0.113.10", ""},
	{"allow-list name, HTTP (egress proxy: request by request)", "allow:allowed.test", "http://allowed.test", ""},
	{"allow-list name, TLS (egress proxy: SNI checked, then spliced)", "allow:allowed.test", "https://allowed.test", "-k"},
}

// networkRows measures networked sandboxes against the fake internet (internal/fakenet): create →
// ready and kill latency per network mode, interleaved so a slow spell of a shared machine does not
// land on one mode; and TCP throughput from a sandbox to a fake internet host through the veth and
// through the egress proxy, beside the host's own throughput to the same host (no sandbox) measured
// in the same run.
func networkRows(ctx context.Context, r *report, c benchConfig) error {
	in, err := fakenet.Start()
	if err != nil {
		return fmt.Errorf("fake internet: %w", err)
	}
	defer in.Close()
	b, err := local.New(ctx, local.Config{DataDir: c.dataDir, TemplateDir: c.templateDir, Binary: c.binary,
		Network: network.Config{Upstreams: []netip.AddrPort{in.Upstream()}}})
	if err != nil {
		return err
	}
	defer b.Close()

	r.printf("\n### Network modes: create → ready and kill, milliseconds (host template, runc, sequential, n=%d each, interleaved)\n\n", c.n)
	r.printf("| mode | create p50 | p90 | p99 | max | create p50 − none's | kill p50 | kill p99 |\n|---|---|---|---|---|---|---|---|\n")
	create, kill := map[string][]time.Duration{}, map[string][]time.Duration{}
	for i := 0; i < c.n+1; i++ {
		for _, m := range netModes {
			start := time.Now()
			s, err := b.Create(ctx, local.Options{Network: m.policy})
			if err != nil {
				return fmt.Errorf("network %s: %w", m.policy, err)
			}
			d := time.Since(start)
			start = time.Now()
			if err := s.Kill(ctx); err != nil {
				return err
			}
			if i > 0 { // the first round warms caches
				create[m.name] = append(create[m.name], d)
				kill[m.name] = append(kill[m.name], time.Since(start))
			}
		}
	}
	none := stats.Percentile(create[netModes[0].name], 50)
	for _, m := range netModes {
		l := create[m.name]
		r.printf("| %s | %.1f | %.1f | %.1f | %.1f | %+.1f | %.1f | %.1f |\n", m.name, ms(stats.Percentile(l, 50)), ms(stats.Percentile(l, 90)), ms(stats.Percentile(l, 99)), ms(stats.Percentile(l, 100)),
			ms(stats.Percentile(l, 50))-ms(none), ms(stats.Percentile(kill[m.name], 50)), ms(stats.Percentile(kill[m.name], 99)))
	}
	r.printf("\nA networked create adds, before the runtime starts: an address lease (a file), a veth pair and its addresses (netlink), one nftables transaction for the sandbox's table, and the start of its egress helper (`agent netd`, which must answer before the create goes on); after `runc create`, moving the peer into the sandbox's namespace. A networked kill adds stopping the helper and deleting the table, link and lease.\n")

	reps, size := c.netReps, c.netBytes
	r.printf("\n### Network throughput: one TCP stream to a fake internet host, MB/s (%d MiB per transfer, median of %d; the sandbox has the default 1 CPU)\n\n", size>>20, reps)
	r.printf("| path | download p50 | download min | upload p50 | upload min |\n|---|---|---|---|---|\n")
	host := func(script string) (string, error) {
		out, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput()
		return string(out), err
	}
	row := func(name string, run func(string) (string, error), base, args string) error {
		down, up, err := throughput(run, base, args, size, reps)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r.printf("| %s | %.0f | %.0f | %.0f | %.0f |\n", name, median(down), slices.Min(down), median(up), slices.Min(up))
		return nil
	}
	if err := row("host → fake internet, HTTP (baseline: no sandbox)", host, "http://203.0.113.10", ""); err != nil {
		return err
	}
	if err := row("host → fake internet, TLS (baseline: no sandbox)", host, "https://allowed.test", "-k --resolve allowed.test:443:203.0.113.10"); err != nil {
		return err
	}
	for _, p := range netPaths {
		s, err := b.Create(ctx, local.Options{Network: p.policy})
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		inside := func(script string) (string, error) {
			out, code, err := s.Output(ctx, "user", "sh", "-c", script)
			if err == nil && code != 0 {
				err = fmt.Errorf("exit %d", code)
			}
			return out, err
		}
		err = row(p.name, inside, p.url, p.curlArgs)
		if kerr := s.Kill(ctx); err == nil {
			err = kerr
		}
		if err != nil {
			return err
		}
	}
	r.printf("\nThe fake internet is a network namespace on this machine behind its own veth pair (`internal/fakenet`): the baseline rows are the host's own path to it, so a sandbox row's gap to them is the cost of the sandbox's link, firewall and (for names on an allow-list) the egress proxy. Downloads are `curl` GETs of `/bytes/N`, uploads `curl -T -` PUTs to `/sink`, each one connection.\n")
	return nil
}

// throughput runs reps downloads and uploads of size bytes with curl through run, and returns
// their speeds in MB/s.
func throughput(run func(string) (string, error), base, args string, size int64, reps int) (down, up []float64, err error) {
	for i := 0; i < reps; i++ {
		out, err := run(fmt.Sprintf("curl -fsS --max-time 120 %s -o /dev/null -w '%%{speed_download}' %s/bytes/%d", args, base, size))
		if err != nil {
			return nil, nil, fmt.Errorf("download: %v: %s", err, firstLine(out))
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
		if err != nil {
			return nil, nil, fmt.Errorf("download speed %q: %w", out, err)
		}
		down = append(down, v/1e6)
		out, err = run(fmt.Sprintf("head -c %d /dev/zero | curl -fsS --max-time 120 %s -o /dev/null -w '%%{speed_upload}' -T - %s/sink", size, args, base))
		if err != nil {
			return nil, nil, fmt.Errorf("upload: %v: %s", err, firstLine(out))
		}
		if v, err = strconv.ParseFloat(strings.TrimSpace(out), 64); err != nil {
			return nil, nil, fmt.Errorf("upload speed %q: %w", out, err)
		}
		up = append(up, v/1e6)
	}
	return down, up, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
