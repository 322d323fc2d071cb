// Package security is the security battery: attacks run inside real sandboxes as root of the
// sandbox, each checked from inside (the attack's own outcome) and from the host (what the host
// can observe: its files, mounts, clock, hostname, listeners, fake-internet traps, cgroup
// counters). Every scenario runs under each runtime that works here (runc, runsc); a networked
// scenario whose sandbox runsc refuses at create (no networking under runsc here) is recorded as
// n/a, neither passed nor failed, and any other refusal fails. With AGENT_SECURITY_DOC set, the
// results table is written into that markdown file between markers.
package security

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/fakenet"
	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/envdclient"
	"github.com/agentrun/agent/sandbox/local"
)

var agentBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		return m.Run()
	}
	return testenv.RunWithAgent(m, &agentBin)
}

// outcome is what a scenario observed.
type outcome struct {
	// Observed says what happened, briefly.
	Observed string
	// Contained is true when the attack was contained as expected.
	Contained bool
}

// scenario is one attack.
type scenario struct {
	Name, Class, Expected string
	// Network is the sandbox's network mode ("" = none).
	Network string
	Limits  local.Limits
	// Exclusive scenarios run alone, with a neighbour sandbox's command latency measured.
	Exclusive bool
	// Runtimes limits the scenario to these runtimes (default: all).
	Runtimes []string
	// Control marks a positive control: the scenario checks that something works (a public host
	// is reachable), so its row says "as expected", not "contained".
	Control bool
	Run     func(ctx context.Context, e *env, s *local.Sandbox) outcome
}

// verdict is a row's result.
type verdict int

const (
	// failed: the attack was not contained, or the sandbox could not be made for a reason the
	// battery does not accept.
	failed verdict = iota
	// contained: the attack was contained (or a positive control worked).
	contained
	// notApplicable: the runtime refused the scenario's sandbox at create because it cannot
	// provide its network mode (runsc: no networking here). Nothing ran, so nothing was shown to
	// be contained; such rows count neither as passes nor as failures.
	notApplicable
)

// naNoNetwork is the result text of a row refused at create for want of networking.
const naNoNetwork = "n/a: refused at create (no networking under runsc)"

// result is one scenario's row.
type result struct {
	Scenario, Class, Expected, Observed, Runtime string
	Verdict                                      verdict
	Control                                      bool
	Neighbour                                    string
}

// text is the row's Result column.
func (r result) text() string {
	switch {
	case r.Verdict == notApplicable:
		return naNoNetwork
	case r.Verdict == contained && r.Control:
		return "as expected (positive control)"
	case r.Verdict == contained:
		return "contained"
	default:
		return "**FAILED**"
	}
}

// env is what scenarios share.
type env struct {
	t       *testing.T
	b       *local.Backend
	in      *fakenet.Internet
	runtime string
	hostDir string // a host directory holding a secret the sandbox must not see
	secret  string
}

func connect(ctx context.Context, info local.ConnectInfo) (local.DataPlane, error) {
	return envdclient.New(envdclient.Config{BaseURL: "http://sandbox-" + info.ID, Dial: info.Dial})
}

// sh runs a shell script as root of the sandbox and returns its combined output (bounded) and
// exit code.
func sh(ctx context.Context, s *local.Sandbox, script string) (string, int) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := s.Run(ctx, sandbox.Cmd{Argv: []string{"/bin/sh", "-c", script}, User: "root", MaxOutput: 64 << 10, Timeout: 100 * time.Second})
	if res == nil {
		return "run failed: " + fmt.Sprint(err), -1
	}
	return string(res.Stdout) + string(res.Stderr), res.ExitCode
}

// py runs a python3 program as root of the sandbox.
func py(ctx context.Context, s *local.Sandbox, prog string) (string, int) {
	return sh(ctx, s, "exec python3 - <<'PYEOF'\n"+prog+"\nPYEOF")
}

func clip(s string, n int) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\n", " ⏎ "))
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func runtimesHere() []string {
	var out []string
	want := []string{"runc", "runsc"}
	if v := os.Getenv("AGENT_SECURITY_RUNTIMES"); v != "" {
		want = strings.Split(v, ",")
	}
	for _, rt := range want {
		if _, err := exec.LookPath(rt); err == nil {
			out = append(out, rt)
		}
	}
	return out
}

func TestBattery(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the battery runs real sandboxes: needs root")
	}
	in := fakenet.New(t)
	dd := localenv.DataDir(t)
	hostDir := t.TempDir()
	secret := fmt.Sprintf("host-secret-%d", time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(hostDir, "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOVITA_API_KEY", "sk-battery-"+secret)
	t.Setenv("OPENAI_API_KEY", "sk-battery-"+secret)
	t.Setenv("AGENT_BATTERY_MARKER", secret)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	b, err := local.New(ctx, local.Config{
		DataDir: filepath.Join(dd, "data"), Binary: agentBin, Connect: connect,
		TemplateDir: os.Getenv("AGENT_TEST_TEMPLATE_DIR"),
		Network:     networkConfig(in, dd),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			t.Errorf("closing backend: %v", err)
		}
		gctx, gcancel := context.WithTimeout(context.Background(), time.Minute)
		defer gcancel()
		if _, err := b.GC(gctx); err != nil {
			t.Errorf("gc: %v", err)
		}
	}()

	var mu sync.Mutex
	var results []result
	for _, rt := range runtimesHere() {
		e := &env{t: t, b: b, in: in, runtime: rt, hostDir: hostDir, secret: secret}
		var shared, exclusive []scenario
		for _, sc := range scenarios() {
			if len(sc.Runtimes) > 0 && !slices.Contains(sc.Runtimes, rt) {
				continue
			}
			if sc.Exclusive {
				exclusive = append(exclusive, sc)
			} else {
				shared = append(shared, sc)
			}
		}
		record := func(r result) {
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}
		t.Run(rt, func(t *testing.T) {
			// Independent scenarios run three at a time; exhaustion ones alone, each with a
			// neighbour whose latency is measured.
			sem := make(chan struct{}, 3)
			var wg sync.WaitGroup
			for _, sc := range shared {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					record(runScenario(ctx, t, e, sc, ""))
				}()
			}
			wg.Wait()
			for _, sc := range exclusive {
				record(runExclusive(ctx, t, e, sc))
			}
		})
	}
	sort.SliceStable(results, func(i, j int) bool {
		if results[i].Class != results[j].Class {
			return results[i].Class < results[j].Class
		}
		if results[i].Scenario != results[j].Scenario {
			return results[i].Scenario < results[j].Scenario
		}
		return results[i].Runtime < results[j].Runtime
	})
	names := map[string]bool{}
	for _, r := range results {
		switch r.Verdict {
		case contained:
			names[r.Scenario] = true
		case failed:
			t.Errorf("%s [%s]: expected %s; observed %s", r.Scenario, r.Runtime, r.Expected, r.Observed)
		}
	}
	// Only scenarios that ran somewhere count: a row refused at create shows nothing.
	if len(names) < 40 {
		t.Errorf("the battery ran %d scenarios; want at least 40", len(names))
	}
	for _, c := range tally(results) {
		t.Logf("%s: %d rows, %d contained, %d n/a (refused at create), %d failed", c.runtime, c.rows, c.contained, c.na, c.failed)
	}
	if doc := os.Getenv("AGENT_SECURITY_DOC"); doc != "" {
		if err := writeTable(doc, results); err != nil {
			t.Errorf("writing the results table: %v", err)
		}
	}
}

// runScenario creates the scenario's sandbox, runs it and kills the sandbox.
func runScenario(ctx context.Context, t *testing.T, e *env, sc scenario, neighbour string) result {
	r := result{Scenario: sc.Name, Class: sc.Class, Expected: sc.Expected, Runtime: e.runtime, Control: sc.Control, Neighbour: neighbour}
	s, err := e.b.Create(ctx, local.Options{Runtime: e.runtime, Network: sc.Network, Limits: sc.Limits})
	if err != nil {
		r.Observed = "sandbox refused: " + clip(err.Error(), 160)
		// runsc refuses networked modes at create (ErrNetworkUnavailable): correct behaviour, but
		// the scenario did not run, so the row is n/a. Any other refusal, or this one for a
		// scenario without networking or under another runtime, fails the battery.
		if sc.Network != "" && e.runtime == "runsc" && errors.Is(err, local.ErrNetworkUnavailable) {
			r.Verdict = notApplicable
			t.Logf("%s [%s]: %s: %s", sc.Name, e.runtime, naNoNetwork, r.Observed)
		}
		return r
	}
	defer func() {
		kctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Kill(kctx); err != nil {
			t.Errorf("%s: kill: %v", sc.Name, err)
		}
	}()
	o := sc.Run(ctx, e, s)
	r.Observed = clip(o.Observed, 200)
	if o.Contained {
		r.Verdict = contained
	}
	t.Logf("%s [%s]: contained=%v: %s", sc.Name, e.runtime, o.Contained, r.Observed)
	return r
}

// runExclusive runs an exhaustion scenario with a neighbour sandbox running `true` every 100 ms,
// and records the neighbour's median and worst command latency during the attack.
func runExclusive(ctx context.Context, t *testing.T, e *env, sc scenario) result {
	nb, err := e.b.Create(ctx, local.Options{Runtime: e.runtime})
	if err != nil {
		return result{Scenario: sc.Name, Class: sc.Class, Expected: sc.Expected, Runtime: e.runtime, Observed: "neighbour: " + err.Error()}
	}
	defer nb.Kill(context.WithoutCancel(ctx))
	stop := make(chan struct{})
	var lat []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			t0 := time.Now()
			_, err := nb.Run(cctx, sandbox.Cmd{Argv: []string{"/bin/true"}})
			cancel()
			if err == nil {
				lat = append(lat, time.Since(t0))
			}
		}
	}()
	r := runScenario(ctx, t, e, sc, "")
	close(stop)
	<-done
	if len(lat) > 0 {
		slices.Sort(lat)
		r.Neighbour = fmt.Sprintf("median %s, max %s (n=%d)", lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), len(lat))
	} else {
		r.Neighbour = "no sample"
	}
	return r
}

const (
	beginMarker = "<!-- BEGIN SECURITY BATTERY (generated by scripts/security.sh; do not edit) -->"
	endMarker   = "<!-- END SECURITY BATTERY -->"
)

// writeTable replaces the text between the markers of doc (appending them when absent).
func writeTable(doc string, rs []result) error {
	var b strings.Builder
	b.WriteString(beginMarker + "\n\n")
	fmt.Fprintf(&b, "Run %s on %s; %d rows.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), hostDesc(), len(rs))
	for _, c := range tally(rs) {
		fmt.Fprintf(&b, "- %s: %d scenarios, %d ran: %d contained, %d failed; %d n/a (refused at create, not counted as passed)\n",
			c.runtime, c.rows, c.contained+c.failed, c.contained, c.failed, c.na)
	}
	b.WriteString("\n| Scenario | Class | Expected | Observed | Runtime | Result | Neighbour latency during the attack |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Scenario, r.Class, r.Expected, r.Observed, r.Runtime, r.text(), r.Neighbour)
	}
	b.WriteString("\n" + endMarker)
	old, err := os.ReadFile(doc)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	i, j := strings.Index(text, beginMarker), strings.Index(text, endMarker)
	if i >= 0 && j > i {
		text = text[:i] + b.String() + text[j+len(endMarker):]
	} else {
		text += "\n" + b.String() + "\n"
	}
	return os.WriteFile(doc, []byte(text), 0o644)
}

// count is one runtime's tally of rows.
type count struct {
	runtime                     string
	rows, contained, failed, na int
}

// tally counts rows per runtime, in runtime order.
func tally(rs []result) []count {
	var cs []count
	for _, r := range rs {
		i := slices.IndexFunc(cs, func(c count) bool { return c.runtime == r.Runtime })
		if i < 0 {
			cs = append(cs, count{runtime: r.Runtime})
			i = len(cs) - 1
		}
		cs[i].rows++
		switch r.Verdict {
		case contained:
			cs[i].contained++
		case notApplicable:
			cs[i].na++
		default:
			cs[i].failed++
		}
	}
	slices.SortFunc(cs, func(a, b count) int { return strings.Compare(a.runtime, b.runtime) })
	return cs
}

func hostDesc() string {
	k, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return "Linux " + strings.TrimSpace(string(k))
}
