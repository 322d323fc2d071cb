package spec

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// The JSON Schemas of spec files (tasks/schema.json) and agent.yaml (tasks/agent.schema.json) are
// generated from the Go types above, so they cannot drift from the decoder: every YAML field is a
// schema property with its `doc` tag as description; value types describe themselves with
// jsonSchema; `min`, `max` and `pattern` tags add constraints. TestSchemaFilesUpToDate keeps the
// committed files equal to the generated ones (go test ./runner/spec -run Schema -update).

// schemaID is the $id of the spec schema; editors match it by file path anyway.
const (
	schemaID       = "https://github.com/agentrun/agent/tasks/schema.json"
	configSchemaID = "https://github.com/agentrun/agent/tasks/agent.schema.json"
)

// jsonSchemaer is implemented by value types with their own schema.
type jsonSchemaer interface {
	jsonSchema() map[string]any
}

// schemaExtender is implemented by structs that add keywords (oneOf, …) to their object schema.
type schemaExtender interface {
	extendSchema(s map[string]any)
}

// SpecSchema returns the JSON Schema (draft 2020-12) of task spec files, indented.
func SpecSchema() ([]byte, error) {
	s := typeSchema(reflect.TypeOf(SpecFile{}))
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = schemaID
	s["title"] = "agent task spec"
	s["description"] = "One task for `agent run`: a prompt, seed files, setup commands and checks. See docs/SPECS.md."
	return marshalSchema(s)
}

// ConfigSchema returns the JSON Schema (draft 2020-12) of agent.yaml, indented.
func ConfigSchema() ([]byte, error) {
	s := typeSchema(reflect.TypeOf(Config{}))
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = configSchemaID
	s["title"] = "agent defaults (agent.yaml)"
	s["description"] = "Defaults for the task specs next to this file and run-wide settings; specs and CLI flags override them. See docs/SPECS.md."
	return marshalSchema(s)
}

func marshalSchema(s map[string]any) ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding schema: %w", err)
	}
	return append(b, '\n'), nil
}

func typeSchema(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(reflect.TypeOf((*jsonSchemaer)(nil)).Elem()) {
		return reflect.Zero(t).Interface().(jsonSchemaer).jsonSchema()
	}
	if reflect.PointerTo(t).Implements(reflect.TypeOf((*jsonSchemaer)(nil)).Elem()) {
		return reflect.New(t).Interface().(jsonSchemaer).jsonSchema()
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": typeSchema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": typeSchema(t.Elem())}
	case reflect.Struct:
		return structSchema(t)
	}
	panic("spec: no schema for " + t.String()) // a programming error caught by the schema test
}

func structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	fs := structFields(t)
	for _, f := range fs.list {
		ps := typeSchema(f.typ)
		sf := t.FieldByIndex(f.index)
		if f.doc != "" {
			ps["description"] = f.doc
		}
		for _, k := range []string{"min", "max"} {
			if v := sf.Tag.Get(k); v != "" {
				key := map[string]string{"min": "minimum", "max": "maximum"}[k]
				if rest, ok := strings.CutPrefix(v, ">"); ok {
					key, v = "exclusiveMinimum", rest
				}
				n, err := strconv.ParseFloat(v, 64)
				if err != nil {
					panic("spec: bad " + k + " tag on " + t.String() + "." + sf.Name)
				}
				ps[key] = n
			}
		}
		if v := sf.Tag.Get("pattern"); v != "" {
			if items, ok := ps["items"].(map[string]any); ok {
				items["pattern"] = v
			} else {
				ps["pattern"] = v
			}
		}
		props[f.name] = ps
		if f.required {
			required = append(required, f.name)
		}
	}
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		s["required"] = required
	}
	if e, ok := reflect.New(t).Interface().(schemaExtender); ok {
		e.extendSchema(s)
	}
	return s
}

func (Duration) jsonSchema() map[string]any {
	return map[string]any{
		"type":    "string",
		"pattern": `^\s*([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+\s*$`,
	}
}

func (Size) jsonSchema() map[string]any {
	return map[string]any{"anyOf": []any{
		map[string]any{"type": "integer", "minimum": 1},
		map[string]any{"type": "string", "pattern": `^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgGtT][iI][bB]?|[kKmMgGtT][bB]|[bB])?\s*$`},
	}}
}

func (Backend) jsonSchema() map[string]any {
	enum := []any{}
	for _, b := range Backends {
		enum = append(enum, string(b))
	}
	return map[string]any{"type": "string", "enum": enum}
}

func (Runtime) jsonSchema() map[string]any {
	enum := []any{}
	for _, r := range Runtimes {
		enum = append(enum, string(r))
	}
	return map[string]any{"type": "string", "enum": enum}
}

func (Keep) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "enum": []any{string(KeepNone), string(KeepFailed), string(KeepAll)}}
}

func (Pattern) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "format": "regex"}
}

func (Mode) jsonSchema() map[string]any {
	return map[string]any{"anyOf": []any{
		map[string]any{"type": "string", "pattern": `^\s*(0[oO])?[0-7]{1,4}\s*$`},
		map[string]any{"type": "integer", "minimum": 0},
	}}
}

func (Env) jsonSchema() map[string]any {
	return map[string]any{
		"type":                 "object",
		"propertyNames":        map[string]any{"pattern": envNameRE.String()},
		"additionalProperties": map[string]any{"type": []any{"string", "number", "boolean"}},
	}
}

func (Network) jsonSchema() map[string]any {
	return map[string]any{"oneOf": []any{
		map[string]any{"type": "string", "enum": []any{string(NetworkNone), string(NetworkInternet)}},
		map[string]any{
			"type":                 "object",
			"additionalProperties": false,
			"required":             []any{"allow"},
			"properties": map[string]any{"allow": map[string]any{
				"type":        "array",
				"minItems":    1,
				"items":       map[string]any{"type": "string", "minLength": 1},
				"description": "Domains (example.com), wildcards for subdomains (*.example.org), IP addresses and CIDR ranges (203.0.113.0/24).",
			}},
		},
	}}
}

func (Command) jsonSchema() map[string]any {
	type plain Command
	obj := structSchema(reflect.TypeOf(plain{}))
	return map[string]any{"oneOf": []any{
		map[string]any{"type": "string", "minLength": 1},
		obj,
	}}
}

func (*FileEntry) extendSchema(s map[string]any) {
	s["oneOf"] = []any{
		map[string]any{"required": []any{"content", "path"}, "not": map[string]any{"required": []any{"from"}}},
		map[string]any{"required": []any{"from"}, "not": map[string]any{"required": []any{"content"}}},
	}
}

func (*CheckEntry) extendSchema(s map[string]any) {
	anyOf := func(keys ...string) map[string]any {
		var alts []any
		for _, k := range keys {
			alts = append(alts, map[string]any{"required": []any{k}})
		}
		return map[string]any{"anyOf": alts}
	}
	s["oneOf"] = []any{
		map[string]any{"required": []any{"run"}, "not": anyOf("file", "exists", "contains", "equals", "regex")},
		map[string]any{"required": []any{"file"}, "not": anyOf("run", "exit", "stdout", "stdout_contains", "stdout_regex", "timeout")},
	}
}
