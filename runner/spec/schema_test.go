package spec

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite tasks/schema.json and tasks/agent.schema.json")

// repoFile names a file relative to the repository root.
func repoFile(p string) string { return filepath.Join("..", "..", p) }

func TestSchemaFilesUpToDate(t *testing.T) {
	for file, gen := range map[string]func() ([]byte, error){
		"tasks/schema.json":       SpecSchema,
		"tasks/agent.schema.json": ConfigSchema,
	} {
		want, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			if err := os.WriteFile(repoFile(file), want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(repoFile(file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date with the Go types: run go test ./runner/spec -run SchemaFiles -update", file)
		}
	}
}

// TestSchemaCoversEveryField walks the Go types and the generated schema side by side: every YAML
// field must be a property, with a description, and the schema must have no other properties.
func TestSchemaCoversEveryField(t *testing.T) {
	for _, tc := range []struct {
		typ reflect.Type
		gen func() ([]byte, error)
	}{{reflect.TypeOf(SpecFile{}), SpecSchema}, {reflect.TypeOf(Config{}), ConfigSchema}} {
		b, err := tc.gen()
		if err != nil {
			t.Fatal(err)
		}
		var s map[string]any
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		checkCovers(t, tc.typ.Name(), tc.typ, s)
	}
}

func checkCovers(t *testing.T, where string, typ reflect.Type, s map[string]any) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch typ.Kind() {
	case reflect.Slice:
		items, _ := s["items"].(map[string]any)
		if items == nil {
			t.Errorf("%s: array schema without items", where)
			return
		}
		checkCovers(t, where+"[]", typ.Elem(), items)
		return
	case reflect.Struct:
	default:
		return
	}
	if typ == reflect.TypeOf(Command{}) {
		// A command is a string or an object; check the object form.
		for _, alt := range s["oneOf"].([]any) {
			if m := alt.(map[string]any); m["type"] == "object" {
				type plain Command
				checkCovers(t, where, reflect.TypeOf(plain{}), m)
			}
		}
		return
	}
	if typ == reflect.TypeOf(Network{}) || typ == reflect.TypeOf(Pattern{}) {
		return // value types with their own schema
	}
	props, _ := s["properties"].(map[string]any)
	if props == nil || s["additionalProperties"] != false {
		t.Errorf("%s: want a closed object schema, got %v", where, s)
		return
	}
	fields := structFields(typ)
	for _, f := range fields.list {
		p, ok := props[f.name].(map[string]any)
		if !ok {
			t.Errorf("%s.%s: missing from the schema", where, f.name)
			continue
		}
		if d, _ := p["description"].(string); d == "" {
			t.Errorf("%s.%s: no description (doc tag)", where, f.name)
		}
		checkCovers(t, where+"."+f.name, f.typ, p)
	}
	if len(props) != len(fields.list) {
		t.Errorf("%s: schema has %d properties, the Go type %d fields", where, len(props), len(fields.list))
	}
}

func compileSchema(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	b, err := os.ReadFile(repoFile(file))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("file:///"+file, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("file:///" + file)
	if err != nil {
		t.Fatalf("compiling %s: %v", file, err)
	}
	return sch
}

// yamlToJSON converts YAML to the JSON value an editor's YAML language server validates.
func yamlToJSON(t *testing.T, src []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func TestSchemaAcceptsValidSpecs(t *testing.T) {
	sch := compileSchema(t, "tasks/schema.json")
	specs, err := filepath.Glob(repoFile("tasks/examples/*/task.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) < 8 {
		t.Fatalf("only %d example specs", len(specs))
	}
	for _, f := range specs {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(yamlToJSON(t, src)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if err := sch.Validate(yamlToJSON(t, []byte(fullSpec))); err != nil {
		t.Errorf("full spec: %v", err)
	}
	for _, src := range []string{
		"prompt: x\n",
		"prompt: x\nnetwork: internet\nsetup: [ls]\n",
		"prompt: x\nfiles: [{path: a, content: ''}, {from: seed}]\nlimits: {memory: 536870912, disk: 1.5GiB}\n",
		"prompt: x\nchecks: [{file: a, exists: false}, {run: ls, exit: 2}]\nenv: {A: 1, B: true}\n",
	} {
		if err := sch.Validate(yamlToJSON(t, []byte(src))); err != nil {
			t.Errorf("%q: %v", src, err)
		}
		if _, err := ParseSpec("s.yaml", []byte(src)); err != nil {
			t.Errorf("%q: loader refuses what the schema accepts: %v", src, err)
		}
	}
	cfg := compileSchema(t, "tasks/agent.schema.json")
	src, err := os.ReadFile(repoFile("tasks/examples/agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(yamlToJSON(t, src)); err != nil {
		t.Errorf("tasks/examples/agent.yaml: %v", err)
	}
}

// TestSchemaRejectsWhatTheLoaderRejects checks that the editor's view agrees with the loader on
// structural errors (the loader also checks what a schema cannot: files, names across specs, …).
func TestSchemaRejectsWhatTheLoaderRejects(t *testing.T) {
	sch := compileSchema(t, "tasks/schema.json")
	for _, src := range []string{
		"name: x\n",
		"prompt: x\nfoo: 1\n",
		"prompt: x\nrepeat: 0\n",
		"prompt: x\nrepeat: two\n",
		"prompt: x\nname: Bad Name\n",
		"prompt: x\ntags: [Bad]\n",
		"prompt: x\nlimits: {timeout: 600}\n",
		"prompt: x\nlimits: {timeout: 10 minutes}\n",
		"prompt: x\nlimits: {memory: 1G}\n",
		"prompt: x\nlimits: {max_steps: 0}\n",
		"prompt: x\nlimits: {cpus: 0}\n",
		"prompt: x\nlimits: {bogus: 1}\n",
		"prompt: x\nnetwork: everything\n",
		"prompt: x\nnetwork: {allow: []}\n",
		"prompt: x\nnetwork: {deny: [a.com]}\n",
		"prompt: x\nkeep: sometimes\n",
		"prompt: x\nworkdir: rel\n",
		"prompt: x\nfiles: [{path: a}]\n",
		"prompt: x\nfiles: [{content: a}]\n",
		"prompt: x\nfiles: [{path: a, content: b, from: c}]\n",
		"prompt: x\nchecks: [{exit: 1}]\n",
		"prompt: x\nchecks: [{run: ls, file: a}]\n",
		"prompt: x\nchecks: [{run: ls, contains: a}]\n",
		"prompt: x\nchecks: [{file: a, stdout: b}]\n",
		"prompt: x\nchecks: [{run: ls, exit: 256}]\n",
		"prompt: x\nsetup: [\"\"]\n",
		"prompt: x\nsetup: [{run: ls, timout: 1s}]\n",
		"prompt: x\nenv: {A: [1]}\n",
		"prompt: x\nenv: {1A: x}\n",
		"prompt: x\nfork_setup: yes\n",
	} {
		if _, err := ParseSpec("s.yaml", []byte(src)); err == nil {
			t.Errorf("%q: the loader accepts it", src)
		}
		if err := sch.Validate(yamlToJSON(t, []byte(src))); err == nil {
			t.Errorf("%q: the schema accepts it", src)
		}
	}
}

func TestSchemaIsDraft202012(t *testing.T) {
	b, err := SpecSchema()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"$schema": "https://json-schema.org/draft/2020-12/schema"`) {
		t.Error("not declared as draft 2020-12")
	}
}
