package e2b

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
)

// ErrRateLimited matches a request the provider kept refusing with 429 (too many requests or
// sandboxes) after the retries.
var ErrRateLimited = errors.New("rate limited by the sandbox provider")

// Bounds on what the client reads from the control plane.
const (
	maxResponseBytes = 16 << 20
	maxErrorBytes    = 64 << 10
	maxMessageLen    = 512
)

// APIError is a non-2xx answer of the control plane. It matches the sandbox package's errors with
// errors.Is: 401/403 ErrUnauthorized, 404 ErrNotFound, 409 ErrExists, 400/422 ErrInvalid, 504
// ErrTimeout, 429 ErrRateLimited, 501 errors.ErrUnsupported.
type APIError struct {
	// Op is what was being done, e.g. "create sandbox".
	Op string
	// Status is the HTTP status; Code the body's numeric code (usually the same).
	Status  int
	Code    int
	Message string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s: %d %s", e.Op, e.Status, msg)
}

// Is maps the status (or the body's code) to the sandbox package's errors.
func (e *APIError) Is(target error) bool {
	code := e.Code
	if code < 400 || code > 599 {
		code = e.Status
	}
	switch target {
	case sandbox.ErrUnauthorized:
		return code == http.StatusUnauthorized || code == http.StatusForbidden
	case sandbox.ErrNotFound:
		return code == http.StatusNotFound
	case sandbox.ErrExists:
		return code == http.StatusConflict
	case sandbox.ErrInvalid:
		return code == http.StatusBadRequest || code == http.StatusUnprocessableEntity
	case sandbox.ErrTimeout:
		return code == http.StatusGatewayTimeout
	case ErrRateLimited:
		return code == http.StatusTooManyRequests
	case errors.ErrUnsupported:
		return code == http.StatusNotImplemented
	}
	return false
}

// apiClient speaks the control plane: auth, JSON bodies, bounded reads, typed errors and retries.
type apiClient struct {
	cfg  Config
	http *http.Client
}

// request is one control-plane call.
type request struct {
	op     string
	method string
	path   string
	query  url.Values
	body   any
	// idempotent requests are retried after 5xx answers and transport errors too (every request is
	// retried after 429, which means nothing was done).
	idempotent bool
	timeout    time.Duration
	// out receives a 2xx body (nil: the body is discarded).
	out any
	// headers are added to the request.
	headers map[string]string
}

// response is what a call returns besides the decoded body.
type response struct {
	status int
	header http.Header
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// do runs the request with retries and returns the final 2xx response, or an *APIError (wrapped)
// or a transport error.
func (c *apiClient) do(ctx context.Context, rq request) (*response, error) {
	var body []byte
	if rq.body != nil {
		var err error
		if body, err = json.Marshal(rq.body); err != nil {
			return nil, fmt.Errorf("%s: encoding the request: %w", rq.op, err)
		}
	}
	u := c.cfg.APIURL + rq.path
	if len(rq.query) > 0 {
		u += "?" + rq.query.Encode()
	}
	timeout := rq.timeout
	if timeout <= 0 {
		timeout = c.cfg.RequestTimeout
	}
	for attempt := 0; ; attempt++ {
		resp, err := c.once(ctx, rq, u, body, timeout)
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil || !rq.idempotent || attempt >= c.cfg.MaxRetries {
				return nil, err
			}
			wait = backoff(attempt)
		case resp.status/100 == 2:
			return &resp.response, nil
		default:
			retry, after := retryable(resp, rq.idempotent)
			if !retry || attempt >= c.cfg.MaxRetries {
				return nil, resp.err
			}
			wait = after
			if wait <= 0 {
				wait = backoff(attempt)
			}
		}
		wait = min(wait, c.cfg.MaxRetryWait)
		c.cfg.Logger.Debug("retrying a control-plane request", "op", rq.op, "attempt", attempt+1, "wait", wait, "err", err)
		if serr := sleepCtx(ctx, wait); serr != nil {
			if err == nil {
				err = resp.err
			}
			return nil, fmt.Errorf("%w (gave up waiting to retry: %w)", err, serr)
		}
	}
}

// attemptResult is one answered attempt.
type attemptResult struct {
	response
	err *APIError
}

// once sends one attempt. A non-2xx answer is returned as a result with err set, not as an error.
func (c *apiClient) once(ctx context.Context, rq request, u string, body []byte, timeout time.Duration) (*attemptResult, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, rq.method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rq.op, err)
	}
	req.Header.Set(e2bapi.HeaderAPIKey, c.cfg.APIKey)
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range rq.headers {
		req.Header.Set(k, v)
	}
	res, err := c.http.Do(req)
	if err != nil {
		if actx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("%s: no answer within %s: %w", rq.op, timeout, sandbox.ErrTimeout)
		}
		return nil, fmt.Errorf("%s: %w", rq.op, err)
	}
	defer res.Body.Close()
	out := &attemptResult{response: response{status: res.StatusCode, header: res.Header}}
	if res.StatusCode/100 == 2 {
		if rq.out != nil && res.StatusCode != http.StatusNoContent {
			dec := json.NewDecoder(io.LimitReader(res.Body, maxResponseBytes))
			if err := dec.Decode(rq.out); err != nil {
				return nil, fmt.Errorf("%s: decoding the %d answer: %w", rq.op, res.StatusCode, err)
			}
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxResponseBytes))
		return out, nil
	}
	raw, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBytes))
	out.err = &APIError{Op: rq.op, Status: res.StatusCode, Code: res.StatusCode}
	var e e2bapi.Error
	if json.Unmarshal(raw, &e) == nil && (e.Code != 0 || e.Message != "") {
		if e.Code != 0 {
			out.err.Code = e.Code
		}
		out.err.Message = clean(e.Message)
	} else {
		out.err.Message = clean(string(raw))
	}
	return out, nil
}

// retryable tells whether an answer may be retried, and after how long the server asked.
// Should-Retry, when present, decides (E2B marks retryable answers with it); otherwise 429 always,
// and 502/503/504 for idempotent requests.
func retryable(res *attemptResult, idempotent bool) (bool, time.Duration) {
	after := parseRetryAfter(res.header.Get("Retry-After"), time.Now())
	if v := res.header.Get("Should-Retry"); v != "" {
		return strings.EqualFold(strings.TrimSpace(v), "true"), after
	}
	switch res.status {
	case http.StatusTooManyRequests:
		return true, after
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return idempotent, after
	}
	return false, 0
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date; 0 when absent or malformed.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 || n > 86400 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// backoff is the wait before retry attempt+1 when the server named none: 0.5 s doubling up to 8 s,
// with jitter so concurrent callers do not retry in step.
func backoff(attempt int) time.Duration {
	d := 500 * time.Millisecond << min(attempt, 4)
	return d/2 + rand.N(d/2+1)
}

// clean makes a server-provided message safe to print: printable, one line, bounded.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxMessageLen {
		s = s[:maxMessageLen] + "…"
	}
	return s
}
