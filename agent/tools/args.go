package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// decodeArgs decodes a model's argument text into dst (a pointer to a struct), strictly: the text
// must be one JSON object whose fields are known and of the right types. The errors are written
// for the model, which will usually correct itself. Two common slips are forgiven: empty text
// (taken as {}) and an object wrapped in a JSON string.
func decodeArgs(raw string, dst any, fields []string) error {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		raw = "{}"
	}
	if raw[0] == '"' {
		var inner string
		if err := json.Unmarshal([]byte(raw), &inner); err == nil && strings.HasPrefix(strings.TrimSpace(inner), "{") {
			raw = inner
		}
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		if dec.More() {
			return fmt.Errorf("unexpected text after the arguments object; send exactly one JSON object")
		}
		var extra json.RawMessage
		if dec.Decode(&extra) == nil {
			return fmt.Errorf("unexpected text after the arguments object; send exactly one JSON object")
		}
		return nil
	}
	want := "a JSON object with " + describeFields(fields)
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("arguments are not valid JSON (%s at byte %d); send %s", syn.Error(), syn.Offset, want)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fmt.Errorf("arguments are not valid JSON (unexpected end: the text is cut short); send %s", want)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("arguments must be %s, not a JSON %s", want, typ.Value)
		}
		return fmt.Errorf("argument %q must be %s, not a JSON %s", typ.Field, jsonKind(typ.Type), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return fmt.Errorf("unknown argument %s; this tool takes %s", name, describeFields(fields))
	}
	return fmt.Errorf("invalid arguments: %v; send %s", err, want)
}

func describeFields(fields []string) string {
	if len(fields) == 0 {
		return "no fields"
	}
	return "the fields " + strings.Join(fields, ", ")
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeOf(pidArg(0)) {
		return "an integer"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Slice:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.Kind().String()
}

// pidArg is a process id, accepted as a JSON number or a string of digits (models write both).
type pidArg uint32

func (p *pidArg) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil || n == 0 {
		return &json.UnmarshalTypeError{Value: "value " + clipArg(s), Type: reflect.TypeOf(pidArg(0))}
	}
	*p = pidArg(n)
	return nil
}

func clipArg(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

type readArgs struct {
	Path *string `json:"path"`
}

type writeArgs struct {
	Path *string `json:"path"`
	Data *string `json:"data"`
}

type fileArg struct {
	Path *string `json:"path"`
	Data *string `json:"data"`
}

type writeFilesArgs struct {
	Files *[]fileArg `json:"files"`
}

type runArgs struct {
	Command    *string `json:"command"`
	Background *bool   `json:"background"`
}

type listArgs struct {
	Path  *string `json:"path"`
	Depth *int    `json:"depth"`
}

type pidArgs struct {
	PID *pidArg `json:"pid"`
}
