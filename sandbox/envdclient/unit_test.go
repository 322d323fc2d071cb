package envdclient

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox"
)

func TestHTTPStatusMapping(t *testing.T) {
	for status, want := range map[int]error{
		404: sandbox.ErrNotFound, 409: sandbox.ErrExists, 400: sandbox.ErrInvalid, 413: sandbox.ErrInvalid,
		401: sandbox.ErrUnauthorized, 403: fs.ErrPermission, 507: sandbox.ErrNoSpace, 502: sandbox.ErrGone,
		504: sandbox.ErrTimeout,
	} {
		err := httpStatusError(status, strings.NewReader(`{"code":1,"message":"the reason"}`))
		if !errors.Is(err, want) {
			t.Errorf("HTTP %d: %v does not match %v", status, err, want)
		}
		var he *HTTPError
		if !errors.As(err, &he) || he.Status != status || he.Message != "the reason" {
			t.Errorf("HTTP %d: %#v", status, he)
		}
	}
	// A non-JSON body is kept as text, bounded.
	err := httpStatusError(500, strings.NewReader(strings.Repeat("x", 1<<20)))
	var he *HTTPError
	if !errors.As(err, &he) || len(he.Message) > maxErrorBody {
		t.Fatalf("unbounded error body: %d bytes", len(he.Message))
	}
	for _, kind := range []error{sandbox.ErrNotFound, sandbox.ErrGone, sandbox.ErrTimeout} {
		if errors.Is(err, kind) {
			t.Errorf("HTTP 500 matched %v", kind)
		}
	}
}

func TestConnectCodeMapping(t *testing.T) {
	for code, want := range map[connect.Code]error{
		connect.CodeNotFound: sandbox.ErrNotFound, connect.CodeAlreadyExists: sandbox.ErrExists,
		connect.CodeInvalidArgument: sandbox.ErrInvalid, connect.CodeUnauthenticated: sandbox.ErrUnauthorized,
		connect.CodeResourceExhausted: sandbox.ErrNoSpace, connect.CodeDeadlineExceeded: sandbox.ErrTimeout,
		connect.CodePermissionDenied: fs.ErrPermission,
	} {
		if got := codeKind(code); got != want {
			t.Errorf("%v: %v, want %v", code, got, want)
		}
	}
	if codeKind(connect.CodeUnavailable) != nil || !mightBeGone(connect.NewError(connect.CodeUnavailable, errors.New("x"))) {
		t.Error("unavailable must be probed, not mapped")
	}
}

func TestHeadBuf(t *testing.T) {
	h := headBuf{max: 5}
	h.write([]byte("abc"))
	if h.truncated {
		t.Fatal("truncated early")
	}
	h.write([]byte("defg"))
	h.write([]byte("h"))
	if string(h.buf) != "abcde" || !h.truncated {
		t.Fatalf("%q %v", h.buf, h.truncated)
	}
}

func TestNewConfig(t *testing.T) {
	for _, bad := range []string{"", "localhost:49983", "ftp://x", "http://x/path", "http://x?q=1", "http://"} {
		if _, err := New(Config{BaseURL: bad}); err == nil {
			t.Errorf("New accepted base URL %q", bad)
		}
	}
	if _, err := New(Config{BaseURL: "http://x", AccessToken: "a\r\nb"}); err == nil {
		t.Error("New accepted a token with a line break")
	}
	c, err := New(Config{BaseURL: "http://127.0.0.1:49983/", KeepaliveInterval: 1500 * 1e6})
	if err != nil {
		t.Fatal(err)
	}
	if c.keepaliveHeader() != "2" || c.cfg.StreamIdleTimeout <= c.cfg.KeepaliveInterval {
		t.Fatalf("keepalive %q, idle %v", c.keepaliveHeader(), c.cfg.StreamIdleTimeout)
	}
	if got := basicAuth("root"); got != "Basic cm9vdDo=" {
		t.Fatalf("basicAuth = %q", got)
	}
}
