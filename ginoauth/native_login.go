package ginoauth

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// This file is the native-app flow. The app is a public client of this
// backend; the backend stays the only AT Protocol OAuth client, and the app
// never sees AT Protocol tokens or DPoP keys.
//
//  1. The app makes a PKCE pair (S256) and a state of its own and POSTs
//     {handle, code_challenge, code_challenge_method, redirect_uri, state}
//     to mobile-start, which answers {"authUrl": ...} (a GET with the same
//     query parameters redirects there instead, for apps that open it
//     directly in the system browser).
//  2. The system browser logs in at the authorization server, which sends
//     it back to the backend's usual callback. The flow record says it is a
//     mobile flow; the backend redirects to the app's registered
//     redirect_uri with a one-time code (256 bits, stored hashed, single
//     use, Mobile.CodeTTL) and the app's state. Nothing else of value is in
//     that URL.
//  3. The app POSTs {code, code_verifier, redirect_uri} to mobile-token. The
//     code is taken atomically and the verifier checked against the stored
//     challenge in constant time; any failure burns the code (and revokes
//     the login). Success answers a session token: 256 bits, stored hashed.
//  4. The app sends Authorization: Bearer <token>; Middleware accepts it
//     like the cookie. mobile-refresh rotates it, keeping the old one valid
//     for Mobile.RefreshGrace; POST /api/logout with the token ends that
//     device and revokes its tokens.

// MobileConfig enables and tunes the native-app flow. It is off unless
// RedirectURIs names at least one redirect URI.
type MobileConfig struct {
	// RedirectURIs are the app redirect URIs the backend may send a code
	// to, matched exactly (loopback ones on any port, RFC 8252 section
	// 7.3). In order of preference (RFC 8252): an OS-verified https link
	// (Universal Links, App Links), which no other app can claim; a
	// private-use scheme that is the reverse of a domain you control
	// ("com.example.app:/oauth/callback"); for desktop apps, loopback
	// ("http://127.0.0.1/callback"). There is no default: a scheme like
	// "app://" can be claimed by any app on the device.
	RedirectURIs []string
	// SessionTTL is how long a native app's login lasts without use (each
	// use extends it, as Config.SessionTTL does a browser's). Default
	// Config.SessionTTL.
	SessionTTL time.Duration
	// CodeTTL is how long the one-time code in the redirect can be
	// redeemed: 10 seconds to 5 minutes, default 60 seconds.
	CodeTTL time.Duration
	// RefreshGrace is how long a rotated-out session token keeps working,
	// so that a rotation whose answer was lost does not log the app out:
	// up to 10 minutes, default 60 seconds.
	RefreshGrace time.Duration
}

func (mc MobileConfig) enabled() bool { return len(mc.RedirectURIs) > 0 }

// validateRedirectURI checks a registered app redirect URI.
func validateRedirectURI(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Fragment != "" || u.User != nil:
		return "is not a redirect URI"
	case u.Scheme == "https":
		if u.Host == "" {
			return "needs a host"
		}
	case u.Scheme == "http" && u.Hostname() == "localhost":
		v := *u
		v.Host = "127.0.0.1"
		if u.Port() != "" {
			v.Host += ":" + u.Port()
		}
		return fmt.Sprintf("a loopback redirect URI names the loopback IP, not localhost, which may resolve elsewhere (RFC 8252 section 8.3); use %s", v.String())
	case u.Scheme == "http":
		if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
			return "plain http is only for loopback redirects (http://127.0.0.1/...); use https"
		}
	case !strings.Contains(u.Scheme, "."):
		return "a private-use scheme must be the reverse of a domain you control, such as com.example.app:/oauth/callback (RFC 8252 section 7.1)"
	}
	return ""
}

// redirectAllowed reports whether raw is a registered app redirect URI.
func (m *Manager) redirectAllowed(raw string) bool {
	if len(raw) > 2048 {
		return false
	}
	if slices.Contains(m.cfg.Mobile.RedirectURIs, raw) {
		return true
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		return false
	}
	// Loopback: any port (the OS picks one when the app listens).
	for _, reg := range m.cfg.Mobile.RedirectURIs {
		r, err := url.Parse(reg)
		if err == nil && r.Scheme == "http" && r.Hostname() == u.Hostname() && r.Path == u.Path && r.RawQuery == u.RawQuery && u.Fragment == "" && u.User == nil {
			return true
		}
	}
	return false
}

// mobileFlow is the part of a flow record that makes it a native app's.
type mobileFlow struct {
	Challenge   string `json:"challenge"`
	RedirectURI string `json:"redirect_uri"`
	AppState    string `json:"app_state"`
}

var (
	challengeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	verifierRE  = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
)

// mobileStartRequest is what a native app sends to start a login.
type mobileStartRequest struct {
	Handle              string
	Server              string // instead of a handle, as StartOptions.Server
	Prompt              string
	CodeChallenge       string
	CodeChallengeMethod string
	RedirectURI         string
	State               string
}

// params names the request's parameters, as the JSON body and the query
// spell them.
func (req *mobileStartRequest) params() map[string]*string {
	return map[string]*string{
		"handle": &req.Handle, "server": &req.Server, "prompt": &req.Prompt, "code_challenge": &req.CodeChallenge,
		"code_challenge_method": &req.CodeChallengeMethod, "redirect_uri": &req.RedirectURI, "state": &req.State,
	}
}

// startMobile begins a native app's login: it checks everything (S256
// challenge, a registered redirect URI, the app's state, the handle)
// before any network call, and returns the authorization URL for the
// system browser.
func (m *Manager) startMobile(c *gin.Context, req mobileStartRequest) (string, error) {
	if !m.cfg.Mobile.enabled() {
		return "", mobileErr(codeMobileDisabled, "this app does not accept native app logins")
	}
	switch {
	case req.CodeChallengeMethod != "S256":
		return "", mobileErr(codeInvalidChallenge, "code_challenge_method must be S256")
	case !challengeRE.MatchString(req.CodeChallenge):
		return "", mobileErr(codeInvalidChallenge, "code_challenge must be the base64url SHA-256 of the code verifier (43 characters)")
	case !m.redirectAllowed(req.RedirectURI):
		return "", mobileErr(codeInvalidRedirectURI, "redirect_uri is not registered for this app")
	case req.State == "" || len(req.State) > maxStateLen || strings.ContainsFunc(req.State, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
		return "", mobileErr(CodeInvalidRequest, "state is required: printable ASCII, at most 512 characters")
	}
	mf := &mobileFlow{Challenge: req.CodeChallenge, RedirectURI: req.RedirectURI, AppState: req.State}
	return m.startFlowWith(c, req.Handle, StartOptions{Server: req.Server, Prompt: req.Prompt}, flowExtra{mobile: mf})
}

// mobileStartHandler: POST JSON answers {"authUrl"}; GET with the same
// query parameters redirects the (system) browser there. The POST reads
// its body only (Content-Type application/json, no key twice); the GET its
// query only.
func (m *Manager) mobileStartHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		var req mobileStartRequest
		if c.Request.Method == http.MethodPost {
			if m.crossOrigin(c.Request) {
				m.refuseCrossSite(c)
				return
			}
			if err := readJSONObject(c, req.params()); err != nil {
				m.abortWithError(c, err)
				return
			}
		} else {
			q, ok := m.query(c)
			if !ok {
				return
			}
			for k, v := range req.params() {
				*v = q.Get(k)
			}
		}
		authURL, err := m.startMobile(c, req)
		c.Header("Cache-Control", "no-store")
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		if c.Request.Method == http.MethodGet {
			c.Redirect(http.StatusFound, authURL)
			return
		}
		c.JSON(http.StatusOK, gin.H{"authUrl": authURL})
	}
}
