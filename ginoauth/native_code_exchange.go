package ginoauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
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
// session token. The code is taken atomically, under a lock named after
// it; a wrong redirect_uri or code_verifier burns it and revokes the login
// behind it. A code presented again after a successful exchange ends the
// session that exchange produced and revokes its tokens (RFC 6749 section
// 4.1.2: a code used twice may have been stolen). Errors: a
// *MobileIntegrationError (400 invalid_grant) or a *storage.Error (503, and
// the code can be redeemed again).
func (m *Manager) redeemMobileCode(c *gin.Context, code, verifier, redirectURI string) (*mobileSession, error) {
	if !m.cfg.Mobile.enabled() {
		return nil, mobileErr(codeMobileDisabled, "this app does not accept native app logins")
	}
	bad := mobileErr(codeInvalidGrant, "the code is unknown, used, expired, or does not match")
	if code == "" || len(code) > 128 || !verifierRE.MatchString(verifier) || len(redirectURI) > 2048 {
		return nil, bad
	}
	ctx := c.Request.Context()
	codeHash := hashSessionID(code)
	// One redemption of a code at a time, on every instance: a second one
	// finds the first's record of what it produced.
	ctx, release, err := m.sessions.lockNamed(ctx, "mcode-lock:"+codeHash, m.codeLockLease())
	if err != nil {
		return nil, err
	}
	defer release()
	var mc mobileCode
	switch err := m.takeJSON(ctx, mobileCodePrefix+codeHash, &mc); {
	case errors.Is(err, storage.ErrNotFound):
		if err := m.endCodeReplay(ctx, codeHash); err != nil {
			return nil, err
		}
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
	token := randomToken(sessionIDBytes)
	// What the code produced is recorded before the session exists, so no
	// session can come from it that a replay would not find.
	spent := spentCode{DID: rec.DID, OAuthSessionID: rec.OAuthSessionID, Session: hashSessionID(token), CreatedAt: rec.CreatedAt}
	err = m.setJSON(ctx, spentCodePrefix+codeHash, spent, m.cfg.Mobile.CodeTTL)
	if err == nil {
		_, err = m.sessions.startAs(ctx, token, &rec)
	}
	if err != nil {
		m.restoreCode(ctx, codeHash, &mc)
		return nil, err
	}
	m.grantStarted(ctx, &mc.Grant)
	return mobileAnswer(token, &rec), nil
}

// spentCodePrefix keys what a redeemed code produced (spentCode), kept for
// Mobile.CodeTTL after the redemption: at least as long as the code could
// still have been presented.
const spentCodePrefix = "mcode-spent:"

// spentCode is the device session a redeemed code produced.
type spentCode struct {
	DID            string    `json:"did"`
	OAuthSessionID string    `json:"oauth_session_id,omitempty"`
	Session        string    `json:"session"` // the hash of its first token
	CreatedAt      time.Time `json:"created_at"`
}

// codeLockLease bounds a code redemption's hold on its lock.
func (m *Manager) codeLockLease() time.Duration { return 15*time.Second + 6*m.cfg.StorageTimeout }

// endCodeReplay ends the device session (and revokes the tokens) that the
// redeemed code under codeHash produced, if it was redeemed: its token may
// be in the wrong hands. Rotations since are followed through the account's
// index. Only a storage failure is returned.
func (m *Manager) endCodeReplay(ctx context.Context, codeHash string) error {
	var spent spentCode
	switch err := m.getJSON(ctx, spentCodePrefix+codeHash, &spent); {
	case errors.Is(err, storage.ErrNotFound):
		return nil // never redeemed (or long ago): just an unknown code
	case err != nil:
		return err
	}
	m.log.Warn("a native app's one-time code was presented again; ending the session it produced", "did", spent.DID, "session", shortRef(spent.Session))
	var rec sessionRecord
	switch err := m.sessions.get(ctx, spent.Session, &rec); {
	case err == nil:
		if err := m.sessions.end(ctx, spent.Session, &rec, EndCodeReplayed); err != nil {
			return err
		}
	case !errors.Is(err, storage.ErrNotFound):
		return err
	}
	// Its successors, if the app rotated the token since.
	if hashes, recs, err := m.sessions.list(ctx, spent.DID); err == nil {
		for i := range recs {
			if recs[i].OAuthSessionID == spent.OAuthSessionID && recs[i].CreatedAt.Equal(spent.CreatedAt) {
				if err := m.sessions.end(ctx, hashes[i], &recs[i], EndCodeReplayed); err != nil {
					return err
				}
			}
		}
	} else if !errors.Is(err, ErrNoIndex) {
		return err
	}
	m.revoke(ctx, spent.DID, spent.OAuthSessionID, spent.Session) // even with no record left
	return nil
}

// restoreCode puts back a code whose redemption failed on a storage
// error, so that the app can retry it; if that fails too, the login is
// lost and its tokens are revoked.
func (m *Manager) restoreCode(ctx context.Context, codeHash string, mc *mobileCode) {
	_ = m.storeDelete(ctx, spentCodePrefix+codeHash)
	left := mc.CreatedAt.Add(m.cfg.Mobile.CodeTTL).Sub(m.now())
	if left > 0 && m.setJSON(ctx, mobileCodePrefix+codeHash, mc, left) == nil {
		return
	}
	m.revoke(ctx, mc.Grant.DID, mc.Grant.OAuthSessionID, "")
}

func (m *Manager) mobileTokenHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		if m.crossOrigin(c.Request) {
			m.refuseCrossSite(c)
			return
		}
		var code, verifier, redirectURI string
		c.Header("Cache-Control", "no-store")
		if err := readJSONObject(c, map[string]*string{"code": &code, "code_verifier": &verifier, "redirect_uri": &redirectURI}); err != nil {
			m.abortWithError(c, err)
			return
		}
		s, err := m.redeemMobileCode(c, code, verifier, redirectURI)
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		c.JSON(http.StatusOK, s)
	}
}
