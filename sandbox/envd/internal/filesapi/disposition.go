package filesapi

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

const (
	// maxDispositionLen bounds a part's Content-Disposition value.
	maxDispositionLen = 16 << 10
	// maxFilenameLen bounds a destination path (PATH_MAX).
	maxFilenameLen = 4096
)

var errDisposition = errors.New("malformed Content-Disposition")

// disposition is what envd needs from a part's Content-Disposition header.
type disposition struct {
	typ         string // disposition type, e.g. form-data
	name        string // form field name
	filename    string // full destination path, directories kept
	hasFilename bool
}

// parseDisposition parses `form-data; name="file"; filename="/home/user/a.txt"`. Unlike
// multipart.Part.FileName it keeps the directories of the filename: the SDKs send the full
// destination path there. In quoted values a backslash escapes only a tspecial such as `"`, `\`
// or `/` (as Go's mime package, and so envd, do: a Windows-style `C:\dir` survives). An RFC 5987
// `filename*` (charset, language, percent-encoded value) wins over `filename`. Parameter names are
// case-insensitive; a repeated parameter is an error.
func parseDisposition(v string) (disposition, error) {
	var d disposition
	if len(v) > maxDispositionLen {
		return d, fmt.Errorf("%w: longer than %d bytes", errDisposition, maxDispositionLen)
	}
	typ, rest := token(skipSpace(v))
	if typ == "" {
		return d, fmt.Errorf("%w: no disposition type", errDisposition)
	}
	d.typ = typ
	seen := map[string]bool{}
	var extFilename string
	hasExt := false
	for {
		rest = skipSpace(rest)
		if rest == "" {
			break
		}
		if rest[0] != ';' {
			return d, fmt.Errorf("%w: expected ';' at %q", errDisposition, clip(rest))
		}
		rest = skipSpace(rest[1:])
		if rest == "" {
			break // a trailing ';' is tolerated
		}
		var key string
		key, rest = token(rest)
		if key == "" {
			return d, fmt.Errorf("%w: expected a parameter name at %q", errDisposition, clip(rest))
		}
		key = strings.ToLower(key)
		rest = skipSpace(rest)
		if rest == "" || rest[0] != '=' {
			return d, fmt.Errorf("%w: expected '=' after %q", errDisposition, key)
		}
		rest = skipSpace(rest[1:])
		var val string
		var err error
		val, rest, err = value(rest)
		if err != nil {
			return d, err
		}
		if seen[key] {
			return d, fmt.Errorf("%w: duplicate parameter %q", errDisposition, key)
		}
		seen[key] = true
		switch key {
		case "name":
			d.name = val
		case "filename":
			d.filename, d.hasFilename = val, true
		case "filename*":
			extFilename, err = decodeExtValue(val)
			if err != nil {
				return d, err
			}
			hasExt = true
		}
	}
	if hasExt {
		d.filename, d.hasFilename = extFilename, true
	}
	if len(d.filename) > maxFilenameLen {
		return d, fmt.Errorf("%w: filename longer than %d bytes", errDisposition, maxFilenameLen)
	}
	return d, nil
}

func skipSpace(s string) string { return strings.TrimLeft(s, " \t") }

func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// isTSpecial reports an RFC 2045 tspecial: a backslash before one of these is an escape.
func isTSpecial(c byte) bool { return strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 }

// isTokenChar reports an RFC 7230 tchar.
func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func token(s string) (tok, rest string) {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// value reads a quoted string or a bare value. Bare values are read leniently (a path like
// /a/b.txt is not an RFC token, yet clients send it unquoted): anything up to ';' or white space,
// without quotes or control characters.
func value(s string) (val, rest string, err error) {
	if s == "" {
		return "", "", fmt.Errorf("%w: missing parameter value", errDisposition)
	}
	if s[0] != '"' {
		i := 0
		for i < len(s) && s[i] != ';' && s[i] != ' ' && s[i] != '\t' {
			if s[i] == '"' || s[i] < 0x20 || s[i] == 0x7f {
				return "", "", fmt.Errorf("%w: invalid character in value %q", errDisposition, clip(s))
			}
			i++
		}
		if i == 0 {
			return "", "", fmt.Errorf("%w: missing parameter value", errDisposition)
		}
		return s[:i], s[i:], nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), s[i+1:], nil
		case c == '\\' && i+1 < len(s) && isTSpecial(s[i+1]):
			b.WriteByte(s[i+1])
			i++
		case c < 0x20 && c != '\t' || c == 0x7f:
			return "", "", fmt.Errorf("%w: control character in quoted value", errDisposition)
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("%w: unterminated quoted value", errDisposition)
}

// decodeExtValue decodes an RFC 5987 ext-value: charset'language'percent-encoded.
func decodeExtValue(v string) (string, error) {
	charset, rest, ok := strings.Cut(v, "'")
	if !ok {
		return "", fmt.Errorf("%w: filename* without charset", errDisposition)
	}
	_, enc, ok := strings.Cut(rest, "'")
	if !ok {
		return "", fmt.Errorf("%w: filename* without language", errDisposition)
	}
	switch strings.ToLower(charset) {
	case "utf-8", "us-ascii":
	default:
		return "", fmt.Errorf("%w: unsupported filename* charset %q", errDisposition, charset)
	}
	s, err := url.PathUnescape(enc)
	if err != nil {
		return "", fmt.Errorf("%w: filename*: %v", errDisposition, err)
	}
	return s, nil
}
