package provider

import (
	"errors"
	"fmt"
	"time"
)

// ErrorKind classifies a failed model call by what the caller can do about it.
type ErrorKind string

// Error kinds. Auth, UnknownModel and BadRequest fail fast; the others are retried.
const (
	// KindAuth: the API key was refused (401/403) or is missing.
	KindAuth ErrorKind = "auth"
	// KindUnknownModel: the endpoint does not serve the model.
	KindUnknownModel ErrorKind = "unknown_model"
	// KindBadRequest: the endpoint refused the request (4xx other than the above and 408/409/429).
	KindBadRequest ErrorKind = "bad_request"
	// KindRateLimited: 429 Too Many Requests.
	KindRateLimited ErrorKind = "rate_limited"
	// KindServer: 5xx, or an error event in the stream.
	KindServer ErrorKind = "server_error"
	// KindTimeout: the watchdog gave up on a call (no connection, no first byte, idle stream).
	KindTimeout ErrorKind = "timeout"
	// KindNetwork: the connection failed or broke.
	KindNetwork ErrorKind = "network"
	// KindProtocol: the endpoint's answer could not be understood.
	KindProtocol ErrorKind = "protocol"
	// KindReplayExhausted: a replay provider has no recorded turn left.
	KindReplayExhausted ErrorKind = "replay_exhausted"
)

// Error is a failed model call.
type Error struct {
	Kind ErrorKind
	// Status is the HTTP status, when there was one.
	Status int
	// Message is the endpoint's error message or a description of the failure.
	Message string
	// Attempts is the number of attempts made before giving up (set on the final error).
	Attempts int
	// RetryAfter is the wait the endpoint asked for (Retry-After), when it did.
	RetryAfter time.Duration
	// Err is the underlying error, if any.
	Err error
}

// Error describes the failure for logs and transcripts.
func (e *Error) Error() string {
	s := "model call failed: " + string(e.Kind)
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Message != "" {
		s += ": " + e.Message
	} else if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.Attempts > 1 {
		s += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	return s
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether another attempt may succeed.
func (e *Error) Retryable() bool {
	switch e.Kind {
	case KindRateLimited, KindServer, KindTimeout, KindNetwork, KindProtocol:
		return true
	}
	return false
}

// IsKind reports whether err is an *Error of the given kind.
func IsKind(err error, kind ErrorKind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == kind
}

// ErrMissingAPIKey is returned by New when a preset needs a key and none is set.
var ErrMissingAPIKey = errors.New("API key not set")
