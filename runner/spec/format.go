package spec

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// FormatSpec writes a spec as YAML that ParseSpec reads back to an equal SpecFile, for example to
// save a one-off `agent do` task as a spec file. Unset fields are left out; empty lists that mean
// something (artifacts: []) are kept.
func FormatSpec(sf *SpecFile) ([]byte, error) { return formatYAML(reflect.ValueOf(sf).Elem()) }

// FormatConfig writes an agent.yaml as FormatSpec writes a spec.
func FormatConfig(c *Config) ([]byte, error) { return formatYAML(reflect.ValueOf(c).Elem()) }

// formatYAML builds the node tree itself rather than calling yaml.Marshal: yaml.v3's marshaller
// drops the leading newlines of strings it writes as block scalars, and omitempty cannot tell an
// unset list from an empty one.
func formatYAML(v reflect.Value) ([]byte, error) {
	n, err := toNode(v)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", err)
	}
	return b.Bytes(), nil
}

var marshalerType = reflect.TypeOf((*yaml.Marshaler)(nil)).Elem()

// toNode converts a value of the spec types to a YAML node.
func toNode(v reflect.Value) (*yaml.Node, error) {
	if v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
		}
		v = v.Elem()
	}
	if v.Type().Implements(marshalerType) {
		out, err := v.Interface().(yaml.Marshaler).MarshalYAML()
		if err != nil {
			return nil, err
		}
		return toNode(reflect.ValueOf(out))
	}
	switch v.Kind() {
	case reflect.String:
		return stringNode(v.String()), nil
	case reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v.Bool())}, nil
	case reflect.Int, reflect.Int32, reflect.Int64:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v.Int(), 10)}, nil
	case reflect.Uint32:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatUint(v.Uint(), 10)}, nil
	case reflect.Float64:
		s := strconv.FormatFloat(v.Float(), 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: s}, nil
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if v.Len() == 0 {
			n.Style = yaml.FlowStyle
		}
		for i := 0; i < v.Len(); i++ {
			c, err := toNode(v.Index(i))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		return n, nil
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			c, err := toNode(v.MapIndex(k))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, stringNode(k.String()), c)
		}
		return n, nil
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, f := range structFields(v.Type()).list {
			fv := v.FieldByIndex(f.index)
			switch fv.Kind() {
			case reflect.Pointer, reflect.Slice, reflect.Map:
				if fv.IsNil() {
					continue
				}
			}
			c, err := toNode(fv)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, stringNode(f.name), c)
		}
		return n, nil
	}
	return nil, fmt.Errorf("encoding YAML: unsupported type %s", v.Type())
}

// stringNode is a string scalar in a style that reads back exactly: literal blocks for multi-line
// text, double quotes where a block or a plain scalar would lose or change something.
func stringNode(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	switch {
	case strings.TrimLeft(s, " \t\r\n") != s || strings.ContainsAny(s, "\r\t") || !printable(s):
		n.Style = yaml.DoubleQuotedStyle
	case strings.Contains(s, "\n") && !strings.Contains(s, " \n") && !strings.HasSuffix(s, " "):
		n.Style = yaml.LiteralStyle
	}
	return n
}

// printable reports whether s holds only printable characters, newlines aside.
func printable(s string) bool {
	for _, r := range s {
		if r != '\n' && (r < 0x20 || r == 0x7f || r == 0xfeff || (r >= 0x80 && r < 0xa0)) {
			return false
		}
	}
	return true
}
