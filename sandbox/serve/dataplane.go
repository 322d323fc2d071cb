package serve

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
)

// routingPrefixes name the routing headers of E2B's and Novita's SDKs (<prefix>-Sandbox-Id,
// <prefix>-Sandbox-Port).
var routingPrefixes = []string{"E2b", "Novita"}

// target is where a data-plane request goes.
type target struct {
	id   string
	port int
	// e is the live sandbox, nil when it is unknown or gone.
	e *entry
	// malformed is set when the routing headers name no well-formed sandbox and port.
	malformed bool
	// badToken is set when the request was routed by an access token no sandbox has.
	badToken bool
}

// hostRE matches "{port}-{sandboxID}[-{clientID}].{domain}[:port]".
var hostRE = regexp.MustCompile(`^([0-9]{1,5})-([a-z0-9]{1,64})(?:-[a-z0-9]{1,32})?\.([^:]+)(?::[0-9]+)?$`)

// route finds the sandbox a request addresses: by routing header, else by access token, else by
// Host. ok is false when the request addresses no sandbox (it is then a control-plane request).
func (s *Server) route(r *http.Request) (target, bool) {
	for _, p := range routingPrefixes {
		raw := r.Header.Get(p + "-Sandbox-Id")
		if raw == "" {
			continue
		}
		t := target{port: e2bapi.EnvdPort}
		if v := r.Header.Get(p + "-Sandbox-Port"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				return target{malformed: true}, true
			}
			t.port = n
		}
		id, err := e2bapi.ParseID(raw)
		if err != nil {
			return target{malformed: true}, true
		}
		t.id = id
		t.e, _ = s.get(id)
		return t, true
	}
	if tok := r.Header.Get(e2bapi.HeaderAccessToken); tok != "" {
		h := sha256.Sum256([]byte(tok))
		s.mu.Lock()
		e, ok := s.byToken[h]
		s.mu.Unlock()
		if ok {
			return target{id: e.id, port: e2bapi.EnvdPort, e: e}, true
		}
		if id, ok := s.gone.byToken(h); ok {
			return target{id: id, port: e2bapi.EnvdPort}, true
		}
		// An unknown token on a data-plane path: refused below, as envd would.
		if isDataPath(r.URL.Path) {
			return target{badToken: true}, true
		}
	}
	host := r.Host
	if m := hostRE.FindStringSubmatch(host); m != nil && (s.cfg.Domain == "" || strings.EqualFold(m[3], s.cfg.Domain)) {
		port, _ := strconv.Atoi(m[1])
		t := target{id: m[2], port: port}
		t.e, _ = s.get(m[2])
		return t, true
	}
	return target{}, false
}

// isDataPath tells whether p is an envd path.
func isDataPath(p string) bool {
	return p == "/files" || p == "/health" || p == "/envs" || strings.HasPrefix(p, "/filesystem.") || strings.HasPrefix(p, "/process.")
}

// serveData proxies a data-plane request to the sandbox's envd, or answers as E2B's proxy does
// when it cannot: 502 for a sandbox that is not there (the SDKs report it as not running) or a port
// nothing listens on.
func (s *Server) serveData(w http.ResponseWriter, r *http.Request, t target) {
	switch {
	case t.badToken:
		dataError(w, r, http.StatusUnauthorized, "unauthenticated", "invalid access token")
	case t.malformed:
		dataError(w, r, http.StatusBadRequest, "invalid_argument", "malformed sandbox id or port in the routing headers")
	case t.e == nil:
		dataError(w, r, http.StatusBadGateway, "unavailable", fmt.Sprintf("The sandbox %s was not found", t.id))
	case t.e.isPaused() && !s.autoResume(r, t.e):
		// E2B's proxy answers 409 for a paused sandbox in its newest form, but the SDKs' is_running
		// reads only 502 as "not running"; 502 keeps that true, with a message that says why.
		dataError(w, r, http.StatusBadGateway, "unavailable",
			fmt.Sprintf("The sandbox %s is paused: connect to it (POST /sandboxes/%s/connect) to resume it", t.id, t.id))
	case t.port != e2bapi.EnvdPort:
		dataError(w, r, http.StatusBadGateway, "unavailable",
			fmt.Sprintf("The sandbox %s is running but port is not open: port %d (only envd's port %d is served)", t.id, t.port, e2bapi.EnvdPort))
	default:
		// Envd answers a stream's headers before the proxy has forwarded the whole request body
		// (the client's end-of-body chunk): without full duplex, HTTP/1's server would close the
		// request body once the proxy flushes those headers, and the copy to envd would fail
		// mid-stream.
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			s.log.Debug("full duplex unavailable", "err", err)
		}
		t.e.proxy.ServeHTTP(w, r)
	}
}

// autoResume resumes a paused sandbox created with autoResume for a request that reached it, with
// the timeout it was created with; it reports whether the sandbox runs now.
func (s *Server) autoResume(r *http.Request, e *entry) bool {
	if !e.autoResume {
		return false
	}
	if _, aerr := s.resumeEntry(r.Context(), e, e.timeout); aerr != nil {
		return false
	}
	return !e.isPaused()
}

// dataError answers a data-plane request in the shape its client expects: a Connect error for RPC
// paths (in an end-stream envelope for streaming calls, so the message survives), envd's
// {"code", "message"} JSON elsewhere.
func dataError(w http.ResponseWriter, r *http.Request, status int, connectCode, msg string) {
	rpc := strings.HasPrefix(r.URL.Path, "/filesystem.") || strings.HasPrefix(r.URL.Path, "/process.")
	ct := r.Header.Get("Content-Type")
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case rpc && strings.HasPrefix(ct, "application/connect+"):
		body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": connectCode, "message": msg}})
		frame := make([]byte, 5+len(body))
		frame[0] = 0x02 // end of stream
		frame[1], frame[2], frame[3], frame[4] = byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
		copy(frame[5:], body)
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(frame)
	case rpc:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"code": connectCode, "message": msg})
	default:
		writeJSON(w, status, e2bapi.Error{Code: status, Message: msg})
	}
}

// strippedHeaders are routing headers envd has no use for.
var strippedHeaders = []string{"E2b-Sandbox-Id", "E2b-Sandbox-Port", "Novita-Sandbox-Id", "Novita-Sandbox-Port", "E2b-Traffic-Access-Token", e2bapi.HeaderAPIKey}

// newProxy builds the reverse proxy to a sandbox's envd: bodies stream both ways unbuffered,
// responses are flushed as they arrive (process output, watch events), response headers are
// bounded, and a client that goes away cancels the request to envd (envd keeps the process).
func (s *Server) newProxy(e *entry) (*http.Transport, *httputil.ReverseProxy) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return e.inst.Dial(ctx) },
		// Encodings pass through untouched: envd compresses when the client asks.
		DisableCompression:     true,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        60 * time.Second,
		ResponseHeaderTimeout:  2 * time.Minute,
		MaxResponseHeaderBytes: MaxHeaderBytes,
		ExpectContinueTimeout:  time.Second,
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "envd"
			pr.Out.Host = "envd"
			for _, h := range strippedHeaders {
				pr.Out.Header.Del(h)
			}
		},
		Transport:     tr,
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				return // the client went away
			}
			s.log.Debug("proxying to envd", "id", e.id, "err", err)
			if cur, ok := s.get(e.id); !ok || cur != e {
				dataError(w, r, http.StatusBadGateway, "unavailable", fmt.Sprintf("The sandbox %s was not found", e.id))
				return
			}
			go s.reap(e)
			dataError(w, r, http.StatusBadGateway, "unavailable", fmt.Sprintf("The sandbox %s could not be reached", e.id))
		},
	}
	return tr, p
}
