package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Bounds on what the decoder accepts; a spec is small, so anything near these is a mistake or an attack.
const (
	maxErrors     = 50     // errors reported per file before giving up
	maxNodeVisits = 200000 // nodes visited per file, aliases counted each time (stops alias bombs)
)

// decoder turns a yaml.Node tree into Go values strictly: unknown fields, duplicate keys, wrong
// types and invalid values are errors at the position of the offending node. It keeps going after
// an error so that one run reports every problem in a file.
type decoder struct {
	file   string
	errs   ErrorList
	visits int
	path   []string // field path for messages, e.g. ["checks[2]", "timeout"]
}

// unmarshaler is implemented by types that decode themselves from a node. It reports its own errors
// through d and returns whether the value was set.
type unmarshaler interface {
	unmarshalYAML(d *decoder, n *yaml.Node) bool
}

// validator is implemented by structs that check relations between their fields after decoding;
// n is the struct's mapping node.
type validator interface {
	validateYAML(d *decoder, n *yaml.Node)
}

// errorf records an error at n's position, prefixed with the current field path.
func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errorAt(posOf(n), format, args...)
}

func (d *decoder) errorAt(p Pos, format string, args ...any) {
	if len(d.errs) == maxErrors {
		d.errs = append(d.errs, &Error{File: d.file, Pos: p, Msg: "too many errors; stopping"})
	}
	if len(d.errs) > maxErrors {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if p := d.pathString(); p != "" {
		msg = p + ": " + msg
	}
	for _, e := range d.errs {
		if e.Pos == p && e.Msg == msg {
			return // found again by a validator looking at the same node
		}
	}
	d.errs = append(d.errs, &Error{File: d.file, Pos: p, Msg: msg})
}

func (d *decoder) pathString() string {
	var b strings.Builder
	for _, s := range d.path {
		if b.Len() > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

func (d *decoder) push(s string) { d.path = append(d.path, s) }
func (d *decoder) pop()          { d.path = d.path[:len(d.path)-1] }

// withField runs f with key appended to the field path.
func (d *decoder) withField(key string, f func()) {
	d.push(key)
	defer d.pop()
	f()
}

func posOf(n *yaml.Node) Pos {
	if n == nil {
		return Pos{}
	}
	return Pos{Line: n.Line, Column: n.Column}
}

// deref follows aliases to the anchored node, counting each visit.
func (d *decoder) deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// budget counts a node visit and reports false once the file has used up its budget.
func (d *decoder) budget(n *yaml.Node) bool {
	d.visits++
	if d.visits == maxNodeVisits {
		d.errorf(n, "document too large or too deeply aliased")
	}
	return d.visits < maxNodeVisits
}

// parseDocument parses src as exactly one YAML document and returns its root node, or nil. An
// empty document is an error unless emptyOK. Syntax errors carry the line yaml.v3 reports;
// yaml.v3 does not report a column for them.
func (d *decoder) parseDocument(src []byte, emptyOK bool) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			if !emptyOK {
				d.errorAt(Pos{Line: 1, Column: 1}, "empty file: a spec needs at least a prompt")
			}
			return nil
		}
		d.syntaxError(err, src)
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		p := posOf(&next)
		if len(next.Content) > 0 {
			p = posOf(next.Content[0])
		}
		d.errorAt(p, "a file holds one YAML document; put each task in its own file")
		return nil
	case !errors.Is(err, io.EOF):
		d.syntaxError(err, src)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		if !emptyOK {
			d.errorAt(Pos{Line: 1, Column: 1}, "empty file: a spec needs at least a prompt")
		}
		return nil
	}
	root := d.deref(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		if !emptyOK {
			d.errorf(root, "empty document: a spec needs at least a prompt")
		}
		return nil
	}
	return root
}

var (
	yamlLineRE   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	yamlAnchorRE = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// syntaxError converts a yaml.v3 parse error ("yaml: line N: msg") to an Error at that line.
// yaml.v3 gives no column for syntax errors, and no line for an unknown anchor, which is located
// here by finding the first *name that refers to it.
func (d *decoder) syntaxError(err error, src []byte) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.errorAt(Pos{Line: line}, "YAML syntax error: %s", m[2])
		return
	}
	if m := yamlAnchorRE.FindStringSubmatch(msg); m != nil {
		ref := regexp.MustCompile(`\*` + regexp.QuoteMeta(m[1]) + `([\s,\]}]|$)`)
		p := Pos{}
		if loc := ref.FindIndex(src); loc != nil {
			before := src[:loc[0]]
			p.Line = bytes.Count(before, []byte("\n")) + 1
			p.Column = utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
		}
		d.errorAt(p, "YAML error: unknown anchor %q referenced (define it with &%s first)", clip(m[1], 60), clip(m[1], 60))
		return
	}
	d.errorAt(Pos{}, "YAML syntax error: %s", strings.TrimPrefix(msg, "yaml: "))
}

// kindName describes a node for "want X, got Y" messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("the string %q", clip(n.Value, 40))
		case "!!int":
			return "the integer " + clip(n.Value, 40)
		case "!!float":
			return "the number " + clip(n.Value, 40)
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "nothing (null)"
		default:
			return fmt.Sprintf("a value tagged %s", n.Tag)
		}
	}
	return "an unsupported YAML node"
}

// typeError reports that n is not what the field wants.
func (d *decoder) typeError(n *yaml.Node, want string) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		d.errorf(n, "missing value: want %s", want)
		return
	}
	hint := ""
	if want == "a string" && n.Kind == yaml.ScalarNode {
		hint = " (quote it to make it a string)"
	}
	d.errorf(n, "want %s, got %s%s", want, kindName(n), hint)
}

// scalarString returns the value of a string scalar, or reports a type error.
func (d *decoder) scalarString(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		d.typeError(n, "a string")
		return "", false
	}
	return n.Value, true
}

// decode decodes n into v, which must be settable. It reports whether v was set without error.
func (d *decoder) decode(n *yaml.Node, v reflect.Value) bool {
	if !d.budget(n) {
		return false
	}
	n = d.deref(n)
	if v.CanAddr() {
		if u, ok := v.Addr().Interface().(unmarshaler); ok {
			return u.unmarshalYAML(d, n)
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		if !d.decode(n, nv.Elem()) {
			return false
		}
		v.Set(nv)
		return true
	case reflect.String:
		s, ok := d.scalarString(n)
		if ok {
			v.SetString(s)
		}
		return ok
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.typeError(n, "true or false")
			return false
		}
		b, err := strconv.ParseBool(n.Value)
		if err != nil {
			d.typeError(n, "true or false")
			return false
		}
		v.SetBool(b)
		return true
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.typeError(n, "an integer")
			return false
		}
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil || v.OverflowInt(i) {
			d.errorf(n, "integer %s out of range", clip(n.Value, 40))
			return false
		}
		v.SetInt(i)
		return true
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") {
			d.typeError(n, "a number")
			return false
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil {
			if i, ierr := strconv.ParseInt(n.Value, 0, 64); ierr == nil {
				f, err = float64(i), nil
			}
		}
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorf(n, "want a finite number, got %s", clip(n.Value, 40))
			return false
		}
		v.SetFloat(f)
		return true
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.typeError(n, "a list")
			return false
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		ok := true
		for i, item := range n.Content {
			d.push(fmt.Sprintf("[%d]", i))
			ok = d.decode(item, s.Index(i)) && ok
			d.pop()
		}
		v.Set(s)
		return ok
	case reflect.Map:
		return d.decodeMap(n, v)
	case reflect.Struct:
		return d.decodeStruct(n, v)
	}
	d.errorf(n, "internal error: cannot decode into %s", v.Type())
	return false
}

// pair is a key and its value in a mapping.
type pair struct{ key, val *yaml.Node }

// pairs lists a mapping's entries with YAML merge keys (<<: *anchor) expanded: keys written in the
// mapping come first and win; merged keys follow, earlier merges winning over later ones.
func (d *decoder) pairs(n *yaml.Node) []pair {
	var explicit, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			v = d.deref(v)
			var srcs []*yaml.Node
			switch v.Kind {
			case yaml.MappingNode:
				srcs = []*yaml.Node{v}
			case yaml.SequenceNode:
				for _, s := range v.Content {
					srcs = append(srcs, d.deref(s))
				}
			default:
				d.errorf(v, "a merge (<<) needs a mapping or a list of mappings, got %s", kindName(v))
			}
			for _, s := range srcs {
				if s.Kind != yaml.MappingNode {
					d.errorf(s, "a merge (<<) needs a mapping or a list of mappings, got %s", kindName(s))
					continue
				}
				if !d.budget(s) {
					return explicit
				}
				merged = append(merged, d.pairs(s)...)
			}
			continue
		}
		explicit = append(explicit, pair{k, v})
	}
	if len(merged) == 0 {
		return explicit
	}
	seen := make(map[string]bool, len(explicit))
	for _, p := range explicit {
		seen[p.key.Value] = true
	}
	out := explicit
	for _, p := range merged {
		if !seen[p.key.Value] {
			seen[p.key.Value] = true
			out = append(out, p)
		}
	}
	return out
}

// value returns the value node of key in mapping n, or nil.
func (d *decoder) value(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for _, p := range d.pairs(n) {
		if p.key.Value == key {
			return d.deref(p.val)
		}
	}
	return nil
}

// keyNode returns the key node of key in mapping n, or n itself when absent (for positions).
func (d *decoder) keyNode(n *yaml.Node, key string) *yaml.Node {
	if n != nil && n.Kind == yaml.MappingNode {
		for _, p := range d.pairs(n) {
			if p.key.Value == key {
				return p.key
			}
		}
	}
	return n
}

// checkKey reports keys that are not plain strings and keys seen before in the same mapping.
func (d *decoder) checkKey(k *yaml.Node, seen map[string]*yaml.Node) bool {
	k = d.deref(k)
	if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && k.Tag != "!!int" && k.Tag != "!!bool") {
		d.errorf(k, "a key must be a plain name, got %s", kindName(k))
		return false
	}
	if first, dup := seen[k.Value]; dup {
		d.errorf(k, "duplicate key %q (first at line %d)", clip(k.Value, 60), first.Line)
		return false
	}
	seen[k.Value] = k
	return true
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value) bool {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, "a mapping")
		return false
	}
	if v.Type().Key().Kind() != reflect.String {
		d.errorf(n, "internal error: map key %s", v.Type().Key())
		return false
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]*yaml.Node{}
	ok := true
	for _, p := range d.pairs(n) {
		if !d.checkKey(p.key, seen) {
			ok = false
			continue
		}
		ev := reflect.New(v.Type().Elem()).Elem()
		d.push(p.key.Value)
		if d.decode(p.val, ev) {
			m.SetMapIndex(reflect.ValueOf(p.key.Value).Convert(v.Type().Key()), ev)
		} else {
			ok = false
		}
		d.pop()
	}
	v.Set(m)
	return ok
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value) bool {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, "a mapping")
		return false
	}
	fields := structFields(v.Type())
	seen := map[string]*yaml.Node{}
	ok := true
	for _, p := range d.pairs(n) {
		if !d.checkKey(p.key, seen) {
			ok = false
			continue
		}
		name := p.key.Value
		f, known := fields.byName[name]
		if !known {
			d.errorf(p.key, "unknown field %q%s", clip(name, 60), fields.suggest(name, len(d.path) == 0))
			ok = false
			continue
		}
		d.push(name)
		ok = d.decode(p.val, v.FieldByIndex(f.index)) && ok
		d.pop()
	}
	for _, f := range fields.list {
		if f.required && seen[f.name] == nil {
			d.errorf(n, "missing required field %q", f.name)
			ok = false
		}
	}
	if val, isV := v.Addr().Interface().(validator); isV {
		val.validateYAML(d, n)
	}
	return ok
}

// field describes one YAML-visible struct field.
type field struct {
	name     string
	index    []int
	doc      string
	required bool
	typ      reflect.Type
}

// fieldSet is a struct's YAML fields in declaration order, inline structs flattened.
type fieldSet struct {
	list   []field
	byName map[string]field
}

// structFields lists the YAML fields of struct type t: exported fields with a `yaml:"name"` tag;
// `yaml:",inline"` embeds a struct's fields; `yaml:"-"` and unexported fields are skipped.
func structFields(t reflect.Type) fieldSet {
	fs := fieldSet{byName: map[string]field{}}
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			tag := sf.Tag.Get("yaml")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), index...), i)
			if opts == "inline" {
				walk(sf.Type, idx)
				continue
			}
			if name == "" {
				continue
			}
			f := field{name: name, index: idx, doc: sf.Tag.Get("doc"), required: sf.Tag.Get("required") == "true", typ: sf.Type}
			fs.list = append(fs.list, f)
			fs.byName[name] = f
		}
	}
	walk(t, nil)
	return fs
}

// topLevelHints names the right place of fields people put at the top level of a spec by mistake.
var topLevelHints = map[string]string{
	"timeout":         "limits.timeout",
	"command_timeout": "limits.command_timeout",
	"max_steps":       "limits.max_steps",
	"max_tokens":      "limits.max_tokens",
	"max_cost":        "limits.max_cost",
	"memory":          "limits.memory",
	"cpus":            "limits.cpus",
	"pids":            "limits.pids",
	"disk":            "limits.disk",
}

// suggest returns a hint for an unknown field name: the nearest known name, or where it belongs.
func (fs fieldSet) suggest(name string, topLevel bool) string {
	if strings.Contains(strings.ToLower(name), "api_key") && !strings.Contains(name, "env") {
		return "; never put secrets in files: name the environment variable that holds the key with api_key_env"
	}
	if topLevel {
		if h, ok := topLevelHints[name]; ok {
			if _, hasLimits := fs.byName["limits"]; hasLimits {
				return fmt.Sprintf("; did you mean %s?", h)
			}
		}
	}
	best, bestD := "", 3
	for _, f := range fs.list {
		if dist := editDistance(strings.ToLower(name), f.name); dist < bestD {
			best, bestD = f.name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	names := make([]string, len(fs.list))
	for i, f := range fs.list {
		names[i] = f.name
	}
	return "; known fields: " + strings.Join(names, ", ")
}

// editDistance is the Levenshtein distance between short strings.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// clip shortens s for messages.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// reflectValue returns the settable value that p points to.
func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }
