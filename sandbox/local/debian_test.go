package local_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/local/template"
)

// TestDebianTemplate builds the debian template once per test run (or reuses
// AGENT_TEST_TEMPLATE_DIR) and runs its tools in a sandbox. AGENT_TEST_SKIP_DEBIAN=1 skips it.
func TestDebianTemplate(t *testing.T) {
	if os.Getenv("AGENT_TEST_SKIP_DEBIAN") != "" {
		t.Skip("AGENT_TEST_SKIP_DEBIAN is set")
	}
	b := newBackend(t, nil)
	ctx := ctxT(t, 30*time.Minute)
	var phases []string
	bctx, cancel := context.WithDeadline(ctx, debianDeadline)
	defer cancel()
	tp, err := b.Templates().Ensure(bctx, template.Debian, func(p template.Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	})
	if err != nil && bctx.Err() != nil && ctx.Err() == nil {
		t.Skipf("the debian template did not build within AGENT_TEST_DEBIAN_BUDGET=%v (a slow mirror?): %v; "+
			"raise the budget or point AGENT_TEST_TEMPLATE_DIR at a built one", debianBudget, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("debian template %s, %d MiB; build phases seen: %v", tp.Digest, tp.SizeBytes>>20, phases)
	for _, rt := range runtimesUnderTest(t) {
		t.Run(rt, func(t *testing.T) {
			s := mustCreate(t, ctx, b, local.Options{Template: template.Debian, Runtime: rt})
			if rec := s.Record(); rec.Template != "debian" || rec.TemplateDigest != tp.Digest {
				t.Errorf("record names template %s %s", rec.Template, rec.TemplateDigest)
			}
			script := `set -e
id -un; pwd
python3 -c 'print(6*7)'
node -e 'console.log("node", 1+1)'
git --version | cut -d' ' -f1-2
python3 -m venv /tmp/venv && /tmp/venv/bin/pip --version | cut -d' ' -f1
printf 'int main(){return 0;}' > t.c && gcc -o t t.c && ./t && echo cc-ok
sudo -n id -u
echo data > file.txt && cat file.txt
grep PRETTY_NAME /etc/os-release`
			out, code, err := s.Output(ctx, "", "bash", "-c", script)
			if err != nil || code != 0 {
				t.Fatalf("debian tools: %v (exit %d)\n%s", err, code, out)
			}
			for _, want := range []string{"user\n/home/user\n", "42\n", "node 2\n", "git version", "pip\n", "cc-ok\n", "\n0\n", "data\n", "bookworm"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			installProbe(t, ctx, s)
			out, code, err = s.Output(ctx, "root", "/tmp/probe", "isolation")
			if err != nil || code != 0 {
				t.Fatalf("probe: %v %d %s", err, code, out)
			}
			var res map[string]string
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatal(err)
			}
			// /usr is the sandbox's own overlay copy in debian (root inside may apt-get install).
			for k, v := range res {
				if v == "allowed" && k != "write_usr" {
					t.Errorf("%s allowed in a debian sandbox", k)
				}
			}
		})
	}
}
