package auth

import (
	"crypto/md5"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

const password = "pa:ss word"

func TestCheckSecretMatchesEachHashKind(t *testing.T) {
	hashed, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// From `openssl passwd -apr1 -salt saltsalt` and `openssl sha1 -binary | base64`.
	for _, secret := range []string{
		"$apr1$saltsalt$fCC.OWuNbc7ccu/6iMvgY/",
		"{SHA}wLRj6V1KMJOvfvMeovciA0CKWSg=",
		string(hashed),
	} {
		if !CheckSecret(password, secret) {
			t.Errorf("%q does not match %q", password, secret)
		}
		if CheckSecret("pa:ss wore", secret) || CheckSecret("", secret) {
			t.Errorf("a wrong password matches %q", secret)
		}
	}
	if CheckSecret("", "") || CheckSecret(password, password) {
		t.Error("an empty or unhashed secret matches")
	}
}

func md5hex(s string) string { return fmt.Sprintf("%x", md5.Sum([]byte(s))) }

// challenge sends an unauthenticated request and returns the answer's Digest parameters.
func challenge(da *DigestAuth, stale bool) (map[string]string, error) {
	w := httptest.NewRecorder()
	if stale {
		da.RequireAuthStale(w, httptest.NewRequest(http.MethodGet, "/", nil))
	} else {
		da.RequireAuth(w, httptest.NewRequest(http.MethodGet, "/", nil))
	}
	if w.Code != http.StatusUnauthorized || w.Body.Len() == 0 {
		return nil, fmt.Errorf("answer %d %q, want 401 with a body", w.Code, w.Body.String())
	}
	params := DigestAuthParams(w.Header().Get("WWW-Authenticate"))
	if params == nil || params["nonce"] == "" || params["algorithm"] != "MD5" {
		return nil, fmt.Errorf("not a Digest challenge: %q", w.Header().Get("WWW-Authenticate"))
	}
	return params, nil
}

// authorized is a request answering the challenge c as user u with the password `secret`.
func authorized(c map[string]string, u string, nc int) *http.Request {
	ha1 := md5hex(u + ":" + c["realm"] + ":secret")
	ncs := fmt.Sprintf("%08x", nc)
	resp := md5hex(ha1 + ":" + c["nonce"] + ":" + ncs + ":cn:auth:" + md5hex("GET:/"))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", fmt.Sprintf(
		`Digest username="%s", realm="%s", nonce="%s", uri="/", qop=auth, nc=%s, cnonce="cn", response="%s", opaque="%s", algorithm=MD5`,
		u, c["realm"], c["nonce"], ncs, resp, c["opaque"]))
	return r
}

func newDigest() *DigestAuth {
	return NewDigestAuthenticator(`realm, algorithm=x`, func(user, realm string) string {
		return md5hex(user + ":" + realm + ":secret")
	})
}

func TestDigestChallengesAreAnsweredAndOnlyTheStaleOneSaysSo(t *testing.T) {
	da := newDigest()
	for _, stale := range []bool{false, true} {
		c, err := challenge(da, stale)
		if err != nil {
			t.Fatal(err)
		}
		if c["realm"] != `realm, algorithm=x` || (c["stale"] == "true") != stale {
			t.Fatalf("stale=%v: challenge %v", stale, c)
		}
		if user, info := da.CheckAuth(authorized(c, "alice", 1)); user != "alice" || info == nil {
			t.Fatalf("stale=%v: the challenge's nonce was not accepted (%q, %v)", stale, user, info)
		}
		if user, _ := da.CheckAuth(authorized(c, "alice", 1)); user != "" {
			t.Fatalf("stale=%v: a replayed nonce count was accepted", stale)
		}
	}
	if user, _ := da.CheckAuth(httptest.NewRequest(http.MethodGet, "/", nil)); user != "" {
		t.Fatal("a request without credentials was accepted")
	}
}

// Upstream alone fails this: its RequireAuth writes the nonce map unlocked ("fatal error:
// concurrent map writes", or a report under `go test -race`).
func TestDigestIsSafeForConcurrentRequests(t *testing.T) {
	// With room for every nonce, each one is accepted. With upstream's default room (1000), the
	// oldest are purged while others are added and checked, maybe one just sent: no check then.
	for _, roomForAll := range []bool{true, false} {
		da := newDigest()
		if roomForAll {
			da.inner.ClientCacheSize = 1 << 20
		}
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 2000; i++ {
					c, err := challenge(da, i%2 == 0)
					if err != nil {
						t.Error(err)
						return
					}
					if user, _ := da.CheckAuth(authorized(c, "bob", 1)); user != "bob" && roomForAll {
						t.Error("a fresh challenge's nonce was refused")
						return
					}
				}
			}()
		}
		wg.Wait()
	}
}
