// Package auth is what Traefik v3.7.13 imports as github.com/abbot/go-http-auth (for its basicAuth
// and digestAuth middlewares), written for this project: upstream go-http-auth v0.4.0, the one
// version the Go module proxy serves, plus the two functions Traefik calls from its fork
// github.com/containous/go-http-auth, which the proxy refuses: CheckSecret and
// DigestAuth.RequireAuthStale. Only the identifiers Traefik uses are provided, so a new use fails
// to compile rather than to run.
package auth

import (
	"io"
	"net/http"
	"strings"
	"sync"

	upstream "deprovisioner.dev/upstream/go-http-auth"
)

// BasicAuth is upstream's Basic authenticator (no state).
type BasicAuth = upstream.BasicAuth

// SecretProvider returns a user's stored secret for a realm, "" for an unknown user.
type SecretProvider = upstream.SecretProvider

// DigestAuthParams parses a Digest Authorization header's parameters (nil if it is not one).
func DigestAuthParams(authorization string) map[string]string {
	return upstream.DigestAuthParams(authorization)
}

// CheckSecret reports whether password matches secret, a hashed htpasswd entry (MD5-crypt,
// `{SHA}` or bcrypt), by upstream's own check: BasicAuth.CheckAuth of a request carrying it.
func CheckSecret(password, secret string) bool {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth("user", password)
	a := BasicAuth{Secrets: func(string, string) string { return secret }}
	return a.CheckAuth(r) != ""
}

// DigestAuth is upstream's Digest authenticator, safe for concurrent requests: upstream v0.4.0's
// RequireAuth adds its nonce to a map without its lock, so every call here holds mu.
type DigestAuth struct {
	mu    sync.Mutex
	inner *upstream.DigestAuth
}

// NewDigestAuthenticator returns a Digest authenticator for realm (secrets returns HA1 digests).
func NewDigestAuthenticator(realm string, secrets SecretProvider) *DigestAuth {
	return &DigestAuth{inner: upstream.NewDigestAuthenticator(realm, secrets)}
}

// CheckAuth returns the authenticated user ("" if none) and the Authentication-Info value.
// Unlike the fork, upstream never reports a stale nonce ("stale"): a nonce count received out of
// order is refused as a replay is, so the client asks its user again.
func (da *DigestAuth) CheckAuth(r *http.Request) (string, *string) {
	da.mu.Lock()
	defer da.mu.Unlock()
	return da.inner.CheckAuth(r)
}

// RequireAuth answers 401 with a new nonce.
func (da *DigestAuth) RequireAuth(w http.ResponseWriter, r *http.Request) {
	da.requireAuth(w, r, false)
}

// RequireAuthStale answers 401 with a new nonce and `stale="true"` (RFC 7616: the credentials
// were right, the nonce was not; retry without asking the user).
func (da *DigestAuth) RequireAuthStale(w http.ResponseWriter, r *http.Request) {
	da.requireAuth(w, r, true)
}

func (da *DigestAuth) requireAuth(w http.ResponseWriter, r *http.Request, stale bool) {
	rec := recorder{header: http.Header{}, code: http.StatusOK}
	da.mu.Lock()
	da.inner.RequireAuth(&rec, r)
	da.mu.Unlock()
	if stale {
		rec.header.Set(da.inner.Headers.V().Authenticate, withStale(rec.header.Get(da.inner.Headers.V().Authenticate)))
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.code)
	_, _ = io.WriteString(w, rec.body.String())
}

// withStale adds `stale="true"` to a Digest challenge, before its algorithm (the last
// `, algorithm=`: the realm comes first and may contain anything).
func withStale(challenge string) string {
	i := strings.LastIndex(challenge, ", algorithm=")
	if i < 0 {
		return challenge + `, stale="true"`
	}
	return challenge[:i] + `, stale="true"` + challenge[i:]
}

// recorder keeps upstream's answer, written under the lock, to send after it.
type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(code int)        { r.code = code }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
