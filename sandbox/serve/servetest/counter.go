package servetest

import (
	"net/http"
	"sync"
)

// StatusCounter counts answered requests by status code and path.
type StatusCounter struct {
	mu     sync.Mutex
	counts map[string]map[int]int
}

// Count returns how many requests to path were answered with status ("" path: any path).
func (c *StatusCounter) Count(path string, status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if path != "" {
		return c.counts[path][status]
	}
	n := 0
	for _, m := range c.counts {
		n += m[status]
	}
	return n
}

func (c *StatusCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		c.mu.Lock()
		if c.counts == nil {
			c.counts = map[string]map[int]int{}
		}
		if c.counts[r.URL.Path] == nil {
			c.counts[r.URL.Path] = map[int]int{}
		}
		c.counts[r.URL.Path][rec.status]++
		c.mu.Unlock()
	})
}

// statusRecorder remembers the status; it passes Flush through so streams stay streams.
type statusRecorder struct {
	http.ResponseWriter
	status  int
	written bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.written {
		r.status, r.written = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.written = true
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
