package ginoauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// The native app's code exchange: at the callback of a native app's login
// the backend issues a one-time code (mcode:{sha256(code)}) for the app's
// registered redirect URI, and the app redeems it at mobile-token with its
// PKCE verifier for a session token.

// mobileCode is what mcode:{sha256(code)} holds until the app redeems it.
type mobileCode struct {
	Grant       oauthclient.Grant `json:"grant"`
	Challenge   string            `json:"challenge"`
	RedirectURI string            `json:"redirect_uri"`
	Requested   []string          `json:"requested,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
}

const mobileCodePrefix = "mcode:"

// finishMobile ends a mobile flow's callback: a one-time code for the app.
func (m *Manager) finishMobile(c *gin.Context, rec *flowRecord, grant *oauthclient.Grant) (string, error) {
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

// redeemMobileCode exchanges the one-time code of the app redirect for a
// session token. The code is taken atomically; a wrong redirect_uri or
// code_verifier burns it and revokes the login behind it. Errors: a
// *MobileIntegrationError (400 invalid_grant) or a *storage.Error.
func (m *Manager) redeemMobileCode(c *gin.Context, code, verifier, redirectURI string) (*mobileSession, error) {
	if !m.cfg.Mobile.enabled() {
		return nil, mobileErr(codeMobileDisabled, "this app does not accept native app logins")
	}
	bad := mobileErr(codeInvalidGrant, "the code is unknown, used, expired, or does not match")
	if code == "" || len(code) > 128 || !verifierRE.MatchString(verifier) || len(redirectURI) > 2048 {
		return nil, bad
	}
	ctx := c.Request.Context()
	var mc mobileCode
	switch err := m.takeJSON(ctx, mobileCodePrefix+hashSessionID(code), &mc); {
	case errors.Is(err, storage.ErrNotFound):
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
		Scopes: mc.Grant.Scopes, Requested: mc.Requested, CreatedAt: now,
		GrantRefreshBy: mc.Grant.RefreshBy, GrantEndsAt: mc.Grant.EndsAt,
		Device: describeDevice(c.Request.UserAgent()), IP: m.clientIP(c),
	}
	token, _, err := m.sessions.start(ctx, &rec)
	if err != nil {
		m.revoke(ctx, mc.Grant.DID, mc.Grant.OAuthSessionID, "")
		return nil, err
	}
	m.grantStarted(ctx, &mc.Grant)
	return mobileAnswer(token, &rec), nil
}

// readJSON decodes a small JSON request body into v.
func readJSON(c *gin.Context, v any) error {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBytes)
	dec := json.NewDecoder(c.Request.Body)
	if err := dec.Decode(v); err != nil {
		return mobileErr(CodeInvalidRequest, "the request body must be a JSON object of at most 16 KiB")
	}
	return nil
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
		s, err := m.redeemMobileCode(c, req.Code, req.Verifier, req.RedirectURI)
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		c.JSON(http.StatusOK, s)
	}
}
