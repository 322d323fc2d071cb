// Package spec loads task specs: the YAML files that tell `agent run` what to ask an agent, which
// files to seed its sandbox with, what to run before it starts and how to grade its work.
//
// Loading is strict. Unknown fields, duplicate keys, wrong types and invalid values are errors,
// each reported as file:line:column: message (an *Error; several in an ErrorList; both match
// ErrSpec). A file holds exactly one YAML document; a second one is an error.
//
// A spec is resolved in layers, later layers winning field by field (env merges by variable,
// limits by limit): built-in defaults (Builtin) < agent.yaml next to the specs (FindConfig) < the
// spec < CLI overrides (Options.Overrides). Seed files named with `from` are read at load time,
// bounded in size and count and confined to the spec's directory (through symlinks too) unless
// Options.AllowOutside is set; the resolved Spec carries their content, and its Digest covers it.
//
// Load ties it together for a run: Discover expands arguments (files, globs, directories) into
// spec files, agent.yaml is found and parsed, every spec is resolved, duplicate names are refused
// and a Selector picks tasks by name and tag. Check.GradeRun and Check.GradeFile grade what the
// runner observed. FormatSpec writes a spec back as YAML. SpecSchema and ConfigSchema generate the
// JSON Schemas in tasks/ from the same Go types. The format is documented in docs/SPECS.md.
package spec
