package envdclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox"
)

// kindError attaches one of the sandbox package's typed errors to an error without changing its text.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// HTTPError is a non-2xx answer of envd's plain-HTTP endpoints ({"code": N, "message": "…"}).
type HTTPError struct {
	Status  int
	Message string
}

func (e *HTTPError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 8 << 10

// httpStatusError turns a non-2xx response into a typed error; body may be nil.
func httpStatusError(status int, body io.Reader) error {
	he := &HTTPError{Status: status}
	if body != nil {
		raw, _ := io.ReadAll(io.LimitReader(body, maxErrorBody))
		var msg struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(raw, &msg) == nil && msg.Message != "" {
			he.Message = msg.Message
		} else {
			he.Message = strings.TrimSpace(strings.ToValidUTF8(string(raw), "?"))
		}
	}
	var kind error
	switch status {
	case http.StatusNotFound:
		kind = sandbox.ErrNotFound
	case http.StatusConflict:
		kind = sandbox.ErrExists
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		kind = sandbox.ErrInvalid
	case http.StatusUnauthorized:
		kind = sandbox.ErrUnauthorized
	case http.StatusForbidden:
		kind = fs.ErrPermission
	case http.StatusInsufficientStorage:
		kind = sandbox.ErrNoSpace
	case http.StatusBadGateway:
		kind = sandbox.ErrGone
	case http.StatusGatewayTimeout, http.StatusRequestTimeout:
		kind = sandbox.ErrTimeout
	default:
		return he
	}
	return &kindError{kind: kind, err: he}
}

// codeKind maps a Connect code to a typed error; nil when the code says nothing a caller acts on.
func codeKind(code connect.Code) error {
	switch code {
	case connect.CodeNotFound:
		return sandbox.ErrNotFound
	case connect.CodeAlreadyExists:
		return sandbox.ErrExists
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		return sandbox.ErrInvalid
	case connect.CodeUnauthenticated:
		return sandbox.ErrUnauthorized
	case connect.CodePermissionDenied:
		return fs.ErrPermission
	case connect.CodeResourceExhausted:
		return sandbox.ErrNoSpace
	case connect.CodeDeadlineExceeded:
		return sandbox.ErrTimeout
	}
	return nil
}

// mightBeGone says whether an error can mean that the sandbox died, so a health probe is worth it.
func mightBeGone(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeUnknown, connect.CodeInternal, connect.CodeAborted:
		return true
	}
	return false
}

// rpcError wraps an RPC error with op and its typed kind. ctx is the caller's context: when it has
// ended, its error is what the caller gets.
func (c *Client) rpcError(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return ctxError(op, cerr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, &kindError{kind: sandbox.ErrTimeout, err: err})
	}
	if kind := codeKind(connect.CodeOf(err)); kind != nil {
		return fmt.Errorf("%s: %w", op, &kindError{kind: kind, err: err})
	}
	if mightBeGone(err) {
		return c.probeGone(op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// transportError wraps an error of a plain-HTTP request (the request never got an answer).
func (c *Client) transportError(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return ctxError(op, cerr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, &kindError{kind: sandbox.ErrTimeout, err: err})
	}
	return c.probeGone(op, err)
}

// responseError wraps a non-2xx answer of a plain-HTTP request.
func (c *Client) responseError(op string, resp *http.Response) error {
	err := httpStatusError(resp.StatusCode, resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusBadGateway {
		return c.probeGone(op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// ctxError reports that the caller's context ended; a deadline is also sandbox.ErrTimeout.
func ctxError(op string, cerr error) error {
	if errors.Is(cerr, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, &kindError{kind: sandbox.ErrTimeout, err: cerr})
	}
	return fmt.Errorf("%s: %w", op, cerr)
}

// probeGone asks GET /health whether envd still lives: when it does not answer, err is
// sandbox.ErrGone; otherwise err was transient and is returned as it is.
func (c *Client) probeGone(op string, err error) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.HealthTimeout)
	defer cancel()
	herr := c.health(ctx)
	if !errors.Is(herr, sandbox.ErrGone) && !errors.Is(herr, sandbox.ErrTimeout) {
		// envd answered (perhaps with an error status): it lives.
		c.log.Debug("envd request failed but envd is healthy", "op", op, "err", err)
		return fmt.Errorf("%s: %w", op, err)
	}
	c.log.Debug("envd is gone", "op", op, "err", err, "health", herr)
	return fmt.Errorf("%s: %w: %w (health check: %v)", op, sandbox.ErrGone, err, herr)
}
