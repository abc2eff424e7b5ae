package ginoauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
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
	// SessionTTL is the absolute lifetime of a native app's login.
	// Default Config.SessionTTL.
	SessionTTL time.Duration
	// CodeTTL is how long the one-time code in the redirect can be
	// redeemed: 10 seconds to 5 minutes, default 60 seconds.
	CodeTTL time.Duration
	// RefreshGrace is how long a rotated-out session token keeps working,
	// so that a rotation whose answer was lost does not log the app out:
	// up to 10 minutes, default 60 seconds.
	RefreshGrace time.Duration
}

// Defaults of MobileConfig.
const (
	DefaultMobileCodeTTL      = time.Minute
	DefaultMobileRefreshGrace = time.Minute
)

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

// mobileCode is what mcode:{sha256(code)} holds until the app redeems it.
type mobileCode struct {
	Grant       Grant     `json:"grant"`
	Challenge   string    `json:"challenge"`
	RedirectURI string    `json:"redirect_uri"`
	Requested   []string  `json:"requested,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

const mobileCodePrefix = "mcode:"

var (
	challengeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	verifierRE  = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
)

func mobileErr(code, msg string) *MobileIntegrationError {
	return &MobileIntegrationError{Code: code, Message: msg}
}

// MobileStartRequest is what a native app sends to start a login.
type MobileStartRequest struct {
	Handle              string `json:"handle" form:"handle"`
	Server              string `json:"server" form:"server"` // instead of a handle, as StartOptions.Server
	Prompt              string `json:"prompt" form:"prompt"`
	CodeChallenge       string `json:"code_challenge" form:"code_challenge"`
	CodeChallengeMethod string `json:"code_challenge_method" form:"code_challenge_method"`
	RedirectURI         string `json:"redirect_uri" form:"redirect_uri"`
	State               string `json:"state" form:"state"`
}

// StartMobile begins a native app's login: it checks everything (S256
// challenge, a registered redirect URI, the app's state, the handle)
// before any network call, and returns the authorization URL for the
// system browser.
func (m *Manager) StartMobile(c *gin.Context, req MobileStartRequest) (string, error) {
	if !m.cfg.Mobile.enabled() {
		return "", mobileErr(MobileDisabled, "this app does not accept native app logins")
	}
	switch {
	case req.CodeChallengeMethod != "S256":
		return "", mobileErr(MobileInvalidChallenge, "code_challenge_method must be S256")
	case !challengeRE.MatchString(req.CodeChallenge):
		return "", mobileErr(MobileInvalidChallenge, "code_challenge must be the base64url SHA-256 of the code verifier (43 characters)")
	case !m.redirectAllowed(req.RedirectURI):
		return "", mobileErr(MobileInvalidRedirectURI, "redirect_uri is not registered for this app")
	case req.State == "" || len(req.State) > maxStateLen || strings.ContainsFunc(req.State, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
		return "", mobileErr(MobileInvalidRequest, "state is required: printable ASCII, at most 512 characters")
	}
	mf := &mobileFlow{Challenge: req.CodeChallenge, RedirectURI: req.RedirectURI, AppState: req.State}
	return m.startFlowWith(c, req.Handle, StartOptions{Server: req.Server, Prompt: req.Prompt}, flowExtra{mobile: mf})
}

// finishMobile ends a mobile flow's callback: a one-time code for the app.
func (m *Manager) finishMobile(c *gin.Context, rec *flowRecord, grant *Grant) (string, error) {
	code := randomToken(32)
	mc := mobileCode{Grant: *grant, Challenge: rec.Mobile.Challenge, RedirectURI: rec.Mobile.RedirectURI, Requested: rec.Scopes, CreatedAt: m.now()}
	key := mobileCodePrefix + hashSessionID(code)
	if err := m.setJSON(c.Request.Context(), key, mc, m.cfg.Mobile.CodeTTL); err != nil {
		return "", err
	}
	m.revokeIfUnredeemed(key, m.cfg.Mobile.CodeTTL)
	return appRedirect(rec.Mobile.RedirectURI, url.Values{"code": {code}, "state": {rec.Mobile.AppState}}), nil
}

// revokeIfUnredeemed revokes the login behind a code nobody redeemed in
// time: its tokens must not stay live with nobody holding them. (A process
// that stops before then leaves them to expire with their session.)
func (m *Manager) revokeIfUnredeemed(key string, ttl time.Duration) {
	m.bg.run(func() {
		t := time.NewTimer(ttl + time.Second)
		defer t.Stop()
		select {
		case <-t.C:
		case <-m.bg.stopping():
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*m.cfg.StorageTimeout)
		defer cancel()
		var mc mobileCode
		if err := m.takeJSON(ctx, key, &mc); err != nil {
			return // redeemed, or storage trouble (the code expires anyway)
		}
		m.revoke(ctx, mc.Grant.DID, mc.Grant.OAuthSessionID, "")
	})
}

// appRedirect adds params to an app redirect URI.
func appRedirect(redirectURI string, params url.Values) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return redirectURI
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// MobileSession is what the token routes answer a native app.
type MobileSession struct {
	SessionToken string    `json:"session_token"`
	TokenType    string    `json:"token_type"` // "Bearer"
	ExpiresAt    time.Time `json:"expires_at"`
	DID          string    `json:"did"`
	Handle       string    `json:"handle"`
	Scopes       []string  `json:"scopes"`
}

// RedeemMobileCode exchanges the one-time code of the app redirect for a
// session token. The code is taken atomically; a wrong redirect_uri or
// code_verifier burns it and revokes the login behind it. Errors: a
// *MobileIntegrationError (400 invalid_grant) or a *StorageError.
func (m *Manager) RedeemMobileCode(c *gin.Context, code, verifier, redirectURI string) (*MobileSession, error) {
	if !m.cfg.Mobile.enabled() {
		return nil, mobileErr(MobileDisabled, "this app does not accept native app logins")
	}
	bad := mobileErr(MobileInvalidGrant, "the code is unknown, used, expired, or does not match")
	if code == "" || len(code) > 128 || !verifierRE.MatchString(verifier) || len(redirectURI) > 2048 {
		return nil, bad
	}
	ctx := c.Request.Context()
	var mc mobileCode
	switch err := m.takeJSON(ctx, mobileCodePrefix+hashSessionID(code), &mc); {
	case errors.Is(err, ErrNotFound):
		return nil, bad
	case err != nil:
		return nil, err
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	expired := !m.now().Before(mc.CreatedAt.Add(m.cfg.Mobile.CodeTTL)) // storage TTLs can be coarse
	if subtle.ConstantTimeCompare([]byte(got), []byte(mc.Challenge)) != 1 || redirectURI != mc.RedirectURI || expired {
		m.log.Warn("native app code redeemed with the wrong verifier or redirect_uri; login revoked", "did", mc.Grant.DID)
		m.revoke(ctx, mc.Grant.DID, mc.Grant.OAuthSessionID, "")
		return nil, bad
	}
	now := m.now()
	rec := sessionRecord{
		Kind: kindMobile, DID: mc.Grant.DID, Handle: mc.Grant.Handle, OAuthSessionID: mc.Grant.OAuthSessionID,
		Scopes: mc.Grant.Scopes, Requested: mc.Requested, CreatedAt: now, ExpiresAt: now.Add(m.cfg.Mobile.SessionTTL),
		Device: describeDevice(c.Request.UserAgent()), IP: m.clientIP(c),
	}
	token, err := m.storeMobileSession(ctx, &rec)
	if err != nil {
		m.revoke(ctx, mc.Grant.DID, mc.Grant.OAuthSessionID, "")
		return nil, err
	}
	m.log.Info("native app session started", "did", rec.DID)
	m.emit(EventLogin, "", &rec, hashSessionID(token))
	return mobileAnswer(token, &rec), nil
}

// storeMobileSession stores rec under a new token and returns the token.
func (m *Manager) storeMobileSession(ctx context.Context, rec *sessionRecord) (string, error) {
	token := randomToken(sessionIDBytes)
	ttl := rec.ExpiresAt.Sub(m.now())
	if ttl <= 0 {
		return "", &SessionError{Code: SessionExpired}
	}
	hash := hashSessionID(token)
	if err := m.putRecord(ctx, hash, rec, ttl); err != nil {
		return "", err
	}
	if err := m.index(ctx, rec.DID, hash, ttl); err != nil {
		_ = m.deleteSessionRecords(ctx, hash)
		return "", err
	}
	return token, nil
}

func mobileAnswer(token string, rec *sessionRecord) *MobileSession {
	return &MobileSession{SessionToken: token, TokenType: "Bearer", ExpiresAt: rec.ExpiresAt, DID: rec.DID, Handle: rec.Handle, Scopes: slices.Clone(rec.Scopes)}
}

// bearerToken returns the token of an Authorization: Bearer header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// readBearer is readSession for a native app's token.
func (m *Manager) readBearer(c *gin.Context, token string) (*User, string, error) {
	if len(token) != sessionIDLen || strings.ContainsFunc(token, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_'
	}) {
		return nil, SessionInvalidToken, nil
	}
	return m.sessionFor(c.Request.Context(), hashSessionID(token), kindMobile)
}

// ValidateMobileSession returns the user of a native app's Authorization
// header ("Bearer <token>"), for code that has the header but not a Gin
// request; errors are as ValidateSession's.
func (m *Manager) ValidateMobileSession(ctx context.Context, authHeader string) (*User, error) {
	req := &http.Request{Header: http.Header{"Authorization": {authHeader}}}
	token, ok := bearerToken(req)
	if !ok {
		return nil, &SessionError{Code: SessionNotLoggedIn}
	}
	if len(token) != sessionIDLen {
		return nil, &SessionError{Code: SessionInvalidToken}
	}
	u, reason, err := m.sessionFor(ctx, hashSessionID(token), kindMobile)
	if err != nil {
		return nil, err
	}
	if u == nil {
		return nil, &SessionError{Code: reason}
	}
	return u, nil
}

// RotateMobileToken gives the native app of this request (by its bearer
// token) a new session token, after checking with the authorization server
// that its login still holds (a coordinated token refresh). The old token
// keeps working for Mobile.RefreshGrace, and rotating it again within that
// window answers the same new token, so a lost answer does not log the app
// out. When the login is gone the device session is deleted and the error
// is a *SessionError (401): never a fresh token. A network failure (502) or
// storage failure (503) keeps the session.
func (m *Manager) RotateMobileToken(c *gin.Context) (*MobileSession, error) {
	if _, ok := bearerToken(c.Request); !ok {
		return nil, &SessionError{Code: SessionNotLoggedIn}
	}
	u, err := m.ValidateSession(c)
	if err != nil {
		return nil, err
	}
	ctx := c.Request.Context()
	var rec sessionRecord
	if err := m.getRecord(ctx, u.sessionHash, &rec); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, &SessionError{Code: SessionNotLoggedIn}
		}
		return nil, err
	}
	if rec.Successor != "" { // a retried rotation within the grace window
		if token, err := m.openSuccessor(u.sessionHash, rec.Successor); err == nil {
			return mobileAnswer(token, &rec), nil
		}
	}
	if rec.OAuthSessionID != "" {
		sess, err := m.OAuthSession(c)
		if err != nil {
			return nil, err
		}
		if r, ok := sess.(interface{ RefreshTokens(context.Context) error }); ok {
			if err := r.RefreshTokens(ctx); err != nil {
				return nil, err // a refused refresh has ended the device session
			}
			rec.Scopes = sess.Scopes()
		}
	}
	// A chain is never longer than two: the token before this one (in its
	// own grace window) ends now, so a logout with the new token ends all.
	if rec.Previous != "" {
		if err := m.deleteSessionRecords(ctx, rec.Previous); err != nil {
			return nil, err
		}
	}
	next := rec
	next.GraceUntil, next.Successor, next.Previous = time.Time{}, "", u.sessionHash
	token, err := m.storeMobileSession(ctx, &next)
	if err != nil {
		return nil, err
	}
	sealed, err := m.sealSuccessor(u.sessionHash, token)
	if err != nil {
		return nil, err
	}
	old := rec
	old.GraceUntil, old.Successor = m.now().Add(m.cfg.Mobile.RefreshGrace), sealed
	if err := m.putRecord(ctx, u.sessionHash, &old, m.cfg.Mobile.RefreshGrace); err != nil {
		return nil, err
	}
	_ = m.unindex(ctx, rec.DID, u.sessionHash) // the device is listed once, by its new token
	return mobileAnswer(token, &next), nil
}

// sealSuccessor seals a rotated token under the record it replaces, so the
// grace window can answer it again without keeping it in the clear.
func (m *Manager) sealSuccessor(hash, token string) (string, error) {
	return m.cookies.seal("successor:"+hash, map[any]any{"t": token}, unixSeconds(m.now().Add(m.cfg.Mobile.RefreshGrace)))
}

func (m *Manager) openSuccessor(hash, sealed string) (string, error) {
	plain, err := m.cookies.openValue("successor:"+hash, sealed)
	if err != nil {
		return "", err
	}
	values := map[any]any{}
	if err := decodeValues(plain, values); err != nil {
		return "", err
	}
	t, _ := values["t"].(string)
	if len(t) != sessionIDLen {
		return "", ErrCookieInvalid
	}
	return t, nil
}

// readJSON decodes a small JSON request body into v.
func readJSON(c *gin.Context, v any) error {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBytes)
	dec := json.NewDecoder(c.Request.Body)
	if err := dec.Decode(v); err != nil {
		return mobileErr(MobileInvalidRequest, "the request body must be a JSON object of at most 16 KiB")
	}
	return nil
}

// mobileStartHandler: POST JSON answers {"authUrl"}; GET with the same
// query parameters redirects the (system) browser there.
func (m *Manager) mobileStartHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		if m.fromOtherSite(c.Request) && c.Request.Method == http.MethodPost {
			m.refuseCrossSite(c)
			return
		}
		var req MobileStartRequest
		if c.Request.Method == http.MethodPost {
			if err := readJSON(c, &req); err != nil {
				m.abortWithError(c, err)
				return
			}
		} else {
			q := c.Request.URL.Query()
			req = MobileStartRequest{Handle: q.Get("handle"), Server: q.Get("server"), Prompt: q.Get("prompt"), CodeChallenge: q.Get("code_challenge"),
				CodeChallengeMethod: q.Get("code_challenge_method"), RedirectURI: q.Get("redirect_uri"), State: q.Get("state")}
		}
		authURL, err := m.StartMobile(c, req)
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

func (m *Manager) mobileTokenHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		if m.fromOtherSite(c.Request) {
			m.refuseCrossSite(c)
			return
		}
		var req struct {
			Code        string `json:"code"`
			Verifier    string `json:"code_verifier"`
			RedirectURI string `json:"redirect_uri"`
		}
		c.Header("Cache-Control", "no-store")
		if err := readJSON(c, &req); err != nil {
			m.abortWithError(c, err)
			return
		}
		s, err := m.RedeemMobileCode(c, req.Code, req.Verifier, req.RedirectURI)
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		c.JSON(http.StatusOK, s)
	}
}

// mobileRefreshHandler rotates the token; legacy answers in the Deno
// library's shape: {"success": true, "payload": {"did", "sid"}}, and
// {"success": false, "error"} on failure.
func (m *Manager) mobileRefreshHandler(legacy bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("Cache-Control", "no-store")
		s, err := m.RotateMobileToken(c)
		if err != nil {
			r := m.replyFor(c, err)
			if r.Status == http.StatusUnauthorized {
				c.Header("WWW-Authenticate", `Bearer error="invalid_token"`)
			}
			if legacy {
				c.AbortWithStatusJSON(r.Status, gin.H{"success": false, "error": r.Message})
				return
			}
			c.AbortWithStatusJSON(r.Status, gin.H{"success": false, "error": r.Message, "code": r.Code})
			return
		}
		if legacy {
			c.JSON(http.StatusOK, gin.H{"success": true, "payload": gin.H{"did": s.DID, "sid": s.SessionToken}})
			return
		}
		c.JSON(http.StatusOK, s)
	}
}
