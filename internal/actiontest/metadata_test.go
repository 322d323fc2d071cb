package actiontest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// repoRoot is the repository root, two levels up from this package.
var repoRoot = filepath.Join("..", "..")

type actionMeta struct {
	Inputs map[string]struct {
		Required bool   `yaml:"required"`
		Default  string `yaml:"default"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Value string `yaml:"value"`
	} `yaml:"outputs"`
	Runs struct {
		Steps []struct {
			ID   string            `yaml:"id"`
			Uses string            `yaml:"uses"`
			Run  string            `yaml:"run"`
			Env  map[string]string `yaml:"env"`
		} `yaml:"steps"`
	} `yaml:"runs"`
}

func TestActionMetadataSchema(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	// YAML → JSON, so the schema sees the types GitHub sees.
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	schemaDoc, err := jsonschema.UnmarshalJSON(mustOpen(t, filepath.Join("testdata", "action-metadata.schema.json")))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("action-metadata.schema.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("action-metadata.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("action.yml does not match the action metadata format: %v", err)
	}
	// The schema can fail: a run step without a shell is refused.
	var broken map[string]any
	json.Unmarshal(js, &broken)
	steps := broken["runs"].(map[string]any)["steps"].([]any)
	delete(steps[len(steps)-1].(map[string]any), "shell")
	b, _ := json.Marshal(broken)
	binst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if sch.Validate(binst) == nil {
		t.Fatal("the schema accepts a composite run step without a shell")
	}
}

func mustOpen(t *testing.T, p string) *os.File {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestActionMetadataWiring checks what a schema cannot: the inputs and outputs the action
// promises, every input reaching the script, and every output coming from the script's step.
func TestActionMetadataWiring(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var m actionMeta
	if err := yaml.Unmarshal(src, &m); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"tasks", "model", "models", "base-url", "api-key", "concurrency", "template", "repeat", "baseline", "out", "fail-on"} {
		if _, ok := m.Inputs[in]; !ok {
			t.Errorf("input %s missing", in)
		}
	}
	if !m.Inputs["tasks"].Required || m.Inputs["template"].Default != "host" || m.Inputs["fail-on"].Default != "failed" {
		t.Errorf("input defaults: %+v", m.Inputs)
	}
	for _, out := range []string{"pass-rate", "passed", "failed", "errored", "results-dir", "report"} {
		o, ok := m.Outputs[out]
		if !ok {
			t.Errorf("output %s missing", out)
			continue
		}
		if o.Value != "${{ steps.run.outputs."+out+" }}" {
			t.Errorf("output %s = %q, want the run step's output", out, o.Value)
		}
	}
	var run *struct {
		ID   string            `yaml:"id"`
		Uses string            `yaml:"uses"`
		Run  string            `yaml:"run"`
		Env  map[string]string `yaml:"env"`
	}
	for i := range m.Runs.Steps {
		if m.Runs.Steps[i].ID == "run" {
			run = &m.Runs.Steps[i]
		}
	}
	if run == nil || !strings.Contains(run.Run, ".github/action/run.sh") {
		t.Fatalf("no step run calls the script")
	}
	// Every input is passed to the script as INPUT_<NAME>, and nothing else is.
	ref := regexp.MustCompile(`^\$\{\{ inputs\.([a-z-]+) \}\}$`)
	var passed []string
	for k, v := range run.Env {
		mm := ref.FindStringSubmatch(v)
		if mm == nil {
			continue
		}
		if want := "INPUT_" + strings.ToUpper(strings.ReplaceAll(mm[1], "-", "_")); k != want {
			t.Errorf("input %s passed as %s, want %s", mm[1], k, want)
		}
		passed = append(passed, mm[1])
	}
	for in := range m.Inputs {
		if !slices.Contains(passed, in) {
			t.Errorf("input %s does not reach the script", in)
		}
	}
	// The script reads every INPUT_ variable it is given.
	script, err := os.ReadFile(filepath.Join(repoRoot, ".github", "action", "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for k := range run.Env {
		if strings.HasPrefix(k, "INPUT_") && !strings.Contains(string(script), k) {
			t.Errorf("the script ignores %s", k)
		}
	}
}

// TestExampleWorkflows checks that the example workflows are valid YAML, use the action, and
// pass it only inputs it has.
func TestExampleWorkflows(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var m actionMeta
	if err := yaml.Unmarshal(src, &m); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(repoRoot, "examples", "github", "*.yml"))
	if len(files) < 2 {
		t.Fatalf("example workflows: %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var wf struct {
			On   any `yaml:"on"`
			Jobs map[string]struct {
				RunsOn string `yaml:"runs-on"`
				Steps  []struct {
					Uses string            `yaml:"uses"`
					With map[string]string `yaml:"with"`
				} `yaml:"steps"`
			} `yaml:"jobs"`
		}
		if err := yaml.Unmarshal(b, &wf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if wf.On == nil || len(wf.Jobs) == 0 {
			t.Fatalf("%s: no trigger or no job", f)
		}
		used := false
		for _, j := range wf.Jobs {
			for _, s := range j.Steps {
				if !strings.HasPrefix(s.Uses, "agentrun/agent@") {
					continue
				}
				used = true
				for in := range s.With {
					if _, ok := m.Inputs[in]; !ok {
						t.Errorf("%s: input %s is not an input of the action", f, in)
					}
				}
				if s.With["tasks"] == "" {
					t.Errorf("%s: no tasks", f)
				}
			}
		}
		if !used {
			t.Errorf("%s does not use the action", f)
		}
	}
}
