package filesapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sign returns the signature of a signed /files URL, as the SDKs compute it:
// "v1_" + unpadded base64 of sha256("path:operation:username:token[:expiration]"). path and username
// are the query values as sent (username "" for the default user); operation is "read" or "write";
// expiration (Unix seconds) is optional.
func Sign(path, operation, username, token string, expiration *int64) string {
	raw := strings.Join([]string{path, operation, username, token}, ":")
	if expiration != nil {
		raw += ":" + strconv.FormatInt(*expiration, 10)
	}
	sum := sha256.Sum256([]byte(raw))
	return "v1_" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// authorize admits a request when no token is configured, when it carries the token (already
// checked by the server, re-checked here), or when its signature matches and has not expired.
func (h *Handler) authorize(r *http.Request, operation string, now time.Time) error {
	if h.cfg.AccessToken == "" {
		return nil
	}
	if tok := r.Header.Get("X-Access-Token"); tok != "" {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(h.cfg.AccessToken)) != 1 {
			return errors.New("access token present in header but does not match")
		}
		return nil
	}
	q := r.URL.Query()
	sig := q.Get("signature")
	if sig == "" {
		return errors.New("missing access token or signature")
	}
	var exp *int64
	if v := q.Get("signature_expiration"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return errors.New("invalid signature_expiration")
		}
		exp = &n
	}
	want := Sign(q.Get("path"), operation, q.Get("username"), h.cfg.AccessToken, exp)
	if subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
		return errors.New("invalid signature")
	}
	if exp != nil && *exp < now.Unix() {
		return errors.New("signature is already expired")
	}
	return nil
}
