package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
	"github.com/agentrun/agent/sandbox/netpolicy"
)

// Bounds on what a create may carry (beyond the body size).
const (
	maxMetadataEntries = 64
	maxMetadataKey     = 256
	maxMetadataValue   = 4096
	maxEnvVars         = 1024
	maxEnvValue        = 128 << 10
	maxTemplateID      = 256
)

// apiError is an error answered with its HTTP status and {"code", "message"}.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.status, e.msg) }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// createRequest is a validated create.
type createRequest struct {
	templateID string
	timeout    time.Duration
	metadata   map[string]string
	env        map[string]string
	autoPause  bool
	autoResume bool
	// network is the egress the client asked for, in netpolicy form ("none", "internet",
	// "allow:…"); the server grants it only with Config.AllowInternet.
	network string
}

var (
	templateRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]*$`)
	envKeyRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// readBody reads a control-plane request body up to max bytes.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, *apiError) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errorf(http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", max)
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "reading the request body failed")
	}
	return b, nil
}

// decodeJSON decodes exactly one JSON value from body into v. An empty body is allowed only when
// optional is set (v is left as is).
func decodeJSON(body []byte, v any, optional bool) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return errorf(http.StatusBadRequest, "request body is empty: a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "malformed JSON body: %s", jsonErrText(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, "malformed JSON body: data after the JSON object")
	}
	return nil
}

// jsonErrText describes a decoding error without echoing the input.
func jsonErrText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s, not %s", truncate(te.Field, 64), te.Type, te.Value)
		}
		return fmt.Sprintf("want %s, not %s", te.Type, te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	default:
		return "not a JSON object of the expected shape"
	}
}

// decodeNewSandbox decodes and validates the body of POST /sandboxes (v2 false) or
// POST /v2/sandboxes (v2 true). maxLifetime bounds the timeout.
func decodeNewSandbox(body []byte, v2 bool, maxLifetime time.Duration) (createRequest, *apiError) {
	var ns e2bapi.NewSandbox
	if aerr := decodeJSON(body, &ns, false); aerr != nil {
		return createRequest{}, aerr
	}
	req := createRequest{templateID: ns.TemplateID, metadata: map[string]string{}, env: map[string]string{}}
	switch {
	case ns.TemplateID == "":
		return req, errorf(http.StatusBadRequest, "templateID is required")
	case len(ns.TemplateID) > maxTemplateID || !templateRE.MatchString(ns.TemplateID):
		return req, errorf(http.StatusBadRequest, "templateID %q is not a template name", truncate(ns.TemplateID, 64))
	}
	req.timeout = DefaultTimeoutV2
	if !v2 {
		req.timeout = DefaultTimeoutV1
	}
	if ns.Timeout != nil {
		t, aerr := timeoutSeconds(*ns.Timeout, maxLifetime)
		if aerr != nil {
			return req, aerr
		}
		req.timeout = t
	}
	if req.timeout > maxLifetime {
		req.timeout = maxLifetime
	}
	req.autoPause = ns.AutoPause != nil && *ns.AutoPause
	req.autoResume = ns.AutoResume != nil && ns.AutoResume.Enabled
	if req.autoResume && !req.autoPause {
		return req, errorf(http.StatusBadRequest, "autoResume needs autoPause: only a sandbox paused at its timeout can be resumed by traffic")
	}
	// autoPauseMemory false (a files-only pause) is honoured with more than was asked: memory is
	// always kept here.
	network, aerr := decodeNetwork(ns.AllowInternetAccess, ns.Network)
	if aerr != nil {
		return req, aerr
	}
	req.network = network
	if len(ns.Metadata) > maxMetadataEntries {
		return req, errorf(http.StatusBadRequest, "metadata has %d entries; at most %d are allowed", len(ns.Metadata), maxMetadataEntries)
	}
	for k, v := range ns.Metadata {
		if k == "" || len(k) > maxMetadataKey || len(v) > maxMetadataValue || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return req, errorf(http.StatusBadRequest, "metadata key %q: keys must be 1-%d bytes and values at most %d bytes", truncate(k, 64), maxMetadataKey, maxMetadataValue)
		}
		req.metadata[k] = v
	}
	if len(ns.EnvVars) > maxEnvVars {
		return req, errorf(http.StatusBadRequest, "envVars has %d entries; at most %d are allowed", len(ns.EnvVars), maxEnvVars)
	}
	for k, v := range ns.EnvVars {
		if !envKeyRE.MatchString(k) || len(k) > 256 {
			return req, errorf(http.StatusBadRequest, "envVars key %q is not an environment variable name", truncate(k, 64))
		}
		if len(v) > maxEnvValue || strings.ContainsRune(v, 0) {
			return req, errorf(http.StatusBadRequest, "envVars %s: values must be at most %d bytes without NUL", k, maxEnvValue)
		}
		req.env[k] = v
	}
	return req, nil
}

// allTraffic is the CIDR E2B's SDKs send to deny (or allow) every destination.
const allTraffic = "0.0.0.0/0"

// decodeNetwork maps E2B's egress request onto a network mode in netpolicy form, with E2B's
// meaning: allow_internet_access (default true) false is the same as denyOut ["0.0.0.0/0"];
// allowOut entries are reachable whatever denyOut says, so they matter only when everything else
// is denied, and then they become an allow-list (domains, "*.domain", addresses, CIDRs). A denyOut
// of anything but all traffic cannot be expressed by the local modes and is refused.
func decodeNetwork(internet *bool, nc *e2bapi.NetworkConfig) (string, *apiError) {
	denyAll := internet != nil && !*internet
	var allow []string
	if nc != nil {
		if len(nc.AllowOut)+len(nc.DenyOut) > netpolicy.MaxEntries {
			return "", errorf(http.StatusBadRequest, "network has more than %d allowOut and denyOut entries", netpolicy.MaxEntries)
		}
		for _, d := range nc.DenyOut {
			if strings.TrimSpace(d) != allTraffic {
				return "", errorf(http.StatusBadRequest, "network.denyOut %q: only %s (deny everything not in allowOut) is supported by agent serve", truncate(d, 64), allTraffic)
			}
			denyAll = true
		}
		for _, a := range nc.AllowOut {
			a = strings.TrimSpace(a)
			if a == allTraffic {
				return string(netpolicy.Internet), nil
			}
			if a == "" || strings.Contains(a, ",") {
				return "", errorf(http.StatusBadRequest, "network.allowOut entry %q is not a domain, address or CIDR", truncate(a, 64))
			}
			allow = append(allow, a)
		}
	}
	switch {
	case !denyAll:
		return string(netpolicy.Internet), nil
	case len(allow) == 0:
		return string(netpolicy.None), nil
	}
	pol, err := netpolicy.Parse("allow:" + strings.Join(allow, ","))
	if err != nil {
		return "", errorf(http.StatusBadRequest, "network.allowOut: %v", err)
	}
	return pol.String(), nil
}

// timeoutSeconds validates a timeout in seconds.
func timeoutSeconds(sec int32, maxLifetime time.Duration) (time.Duration, *apiError) {
	if sec < 0 {
		return 0, errorf(http.StatusBadRequest, "timeout must not be negative")
	}
	t := time.Duration(sec) * time.Second
	if t > maxLifetime {
		return 0, errorf(http.StatusBadRequest, "timeout %d s exceeds the maximum of %d s", sec, int64(maxLifetime/time.Second))
	}
	return t, nil
}

// decodeConnect decodes the body of a connect (timeout optional, default 300 s; longer than the
// maximum lifetime is clamped).
func decodeConnect(body []byte, maxLifetime time.Duration) (time.Duration, *apiError) {
	var cs e2bapi.ConnectSandbox
	if aerr := decodeJSON(body, &cs, true); aerr != nil {
		return 0, aerr
	}
	if cs.Timeout == nil {
		return min(DefaultTimeoutV2, maxLifetime), nil
	}
	if *cs.Timeout < 0 {
		return 0, errorf(http.StatusBadRequest, "timeout must not be negative")
	}
	return min(time.Duration(*cs.Timeout)*time.Second, maxLifetime), nil
}

// decodeTimeout decodes the body of POST /sandboxes/{id}/timeout.
func decodeTimeout(body []byte, maxLifetime time.Duration) (time.Duration, *apiError) {
	var tr struct {
		Timeout *int32 `json:"timeout"`
	}
	if aerr := decodeJSON(body, &tr, false); aerr != nil {
		return 0, aerr
	}
	if tr.Timeout == nil {
		return 0, errorf(http.StatusBadRequest, "timeout is required")
	}
	if *tr.Timeout < 0 {
		return 0, errorf(http.StatusBadRequest, "timeout must not be negative")
	}
	return min(time.Duration(*tr.Timeout)*time.Second, maxLifetime), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
