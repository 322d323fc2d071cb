package filemeta

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFromHeadersAndValidate(t *testing.T) {
	h := http.Header{}
	h.Set("X-Metadata-Author", "alice")
	h.Set("x-metadata-run-id", "42")
	h.Set("X-Metadata-", "empty key is not metadata")
	h.Set("X-Other", "no")
	md := FromHeaders(h)
	if len(md) != 2 || md["author"] != "alice" || md["run-id"] != "42" {
		t.Fatalf("FromHeaders = %v", md)
	}
	if FromHeaders(http.Header{"Accept": {"x"}}) != nil {
		t.Error("metadata from no X-Metadata headers")
	}
	for _, bad := range []map[string]string{
		{"": "v"},
		{strings.Repeat("k", MaxKeyLen+1): "v"},
		{"k": "caf\u00e9"},
		{"k": "line\nbreak"},
		{"a": strings.Repeat("v", MaxTotalLen)},
	} {
		if err := Validate(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%.40v) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := Validate(map[string]string{strings.Repeat("k", MaxKeyLen): "ok", "b": ""}); err != nil {
		t.Errorf("valid metadata refused: %v", err)
	}
}

func TestWriteReadReplace(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// An xattr outside envd's namespace must survive.
	if err := unix.Fsetxattr(int(f.Fd()), "user.other", []byte("keep"), 0); err != nil {
		if Unsupported(err) {
			t.Skip("no user xattrs here")
		}
		t.Fatal(err)
	}
	if err := Write(f, map[string]string{"a": "1", "b": "2"}); err != nil {
		t.Fatal(err)
	}
	md, err := Read(f)
	if err != nil || len(md) != 2 || md["a"] != "1" || md["b"] != "2" {
		t.Fatalf("Read = %v, %v", md, err)
	}
	if err := Write(f, map[string]string{"b": "3"}); err != nil {
		t.Fatal(err)
	}
	if md, _ := Read(f); len(md) != 1 || md["b"] != "3" {
		t.Fatalf("after replace: %v", md)
	}
	// Values set from inside a sandbox need not be UTF-8: they are skipped, not fatal.
	if err := unix.Fsetxattr(int(f.Fd()), Prefix+"bin", []byte{0xff, 0xfe}, 0); err != nil {
		t.Fatal(err)
	}
	if md, err := Read(f); err != nil || len(md) != 1 {
		t.Fatalf("with a binary value: %v, %v", md, err)
	}
	if err := Write(f, nil); err != nil {
		t.Fatal(err)
	}
	if md, _ := Read(f); md != nil {
		t.Fatalf("after clearing: %v", md)
	}
	buf := make([]byte, 16)
	if n, err := unix.Fgetxattr(int(f.Fd()), "user.other", buf); err != nil || string(buf[:n]) != "keep" {
		t.Fatalf("foreign xattr: %q, %v", buf[:n], err)
	}
}
