package ginoauth

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// A native app's session token: read from Authorization: Bearer (and from
// nowhere else), rotated at mobile-refresh with a grace window, ended by
// POST /api/logout with the token.

// mobileSession is what the token routes answer a native app.
type mobileSession struct {
	SessionToken string    `json:"session_token"`
	TokenType    string    `json:"token_type"` // "Bearer"
	ExpiresAt    time.Time `json:"expires_at"`
	DID          string    `json:"did"`
	Handle       string    `json:"handle"`
	Scopes       []string  `json:"scopes"`
}

func mobileAnswer(token string, rec *sessionRecord) *mobileSession {
	return &mobileSession{SessionToken: token, TokenType: "Bearer", ExpiresAt: rec.ExpiresAt, DID: rec.DID, Handle: rec.Handle, Scopes: slices.Clone(rec.Scopes)}
}

// readBearer returns the user of a native app's token, or the code saying
// why there is none.
func (m *Manager) readBearer(c *gin.Context, token string) (*User, ErrorCode, error) {
	if len(token) != sessionIDLen || strings.ContainsFunc(token, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_'
	}) {
		return nil, CodeInvalidToken, nil
	}
	return m.sessions.read(c.Request.Context(), token, kindMobile)
}

// rotateMobileToken gives the native app of this request (by its bearer
// token) a new session token, after checking with the authorization server
// that its login still holds (a coordinated token refresh). The old token
// keeps working for Mobile.RefreshGrace, and rotating it again within that
// window answers the same new token, so a lost answer does not log the app
// out. When the login is gone the device session is deleted and the error
// is a *SessionError (401): never a fresh token. A network failure (502) or
// storage failure (503) keeps the session.
func (m *Manager) rotateMobileToken(c *gin.Context) (*mobileSession, error) {
	if _, ok := bearerToken(c.Request); !ok {
		return nil, &SessionError{Code: CodeNotLoggedIn}
	}
	u, err := m.ValidateSession(c)
	if err != nil {
		return nil, err
	}
	ctx := c.Request.Context()
	var rec sessionRecord
	if err := m.sessions.get(ctx, u.sessionHash, &rec); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, &SessionError{Code: CodeNotLoggedIn}
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
		if r, ok := sess.(oauthclient.Refresher); ok {
			if err := r.RefreshTokens(ctx); err != nil {
				return nil, err // a refused refresh has ended the device session
			}
			rec.Scopes = sess.Scopes()
		}
	}
	// A chain is never longer than two: the token before this one (in its
	// own grace window) ends now, so a logout with the new token ends all.
	if rec.Previous != "" {
		if err := m.sessions.deleteRecords(ctx, rec.Previous); err != nil {
			return nil, err
		}
	}
	next := rec
	next.GraceUntil, next.Successor, next.Previous = time.Time{}, "", u.sessionHash
	token, _, err := m.sessions.create(ctx, &next)
	if err != nil {
		return nil, err
	}
	sealed, err := m.sealSuccessor(u.sessionHash, token)
	if err != nil {
		return nil, err
	}
	old := rec
	old.GraceUntil, old.Successor = m.now().Add(m.cfg.Mobile.RefreshGrace), sealed
	if err := m.sessions.put(ctx, u.sessionHash, &old, m.cfg.Mobile.RefreshGrace); err != nil {
		return nil, err
	}
	_ = m.sessions.unindex(ctx, rec.DID, u.sessionHash) // the device is listed once, by its new token
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
		return "", errCookieInvalid
	}
	return t, nil
}

// mobileRefreshHandler rotates the token; legacy answers in the Deno
// library's shape: {"success": true, "payload": {"did", "sid"}}, and
// {"success": false, "error"} on failure.
func (m *Manager) mobileRefreshHandler(legacy bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("Cache-Control", "no-store")
		s, err := m.rotateMobileToken(c)
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

// successorHash is the hash of the token a rotated-out record names as its
// successor, for the session core to end both together.
func (m *Manager) successorHash(hash, sealed string) (string, bool) {
	t, err := m.openSuccessor(hash, sealed)
	if err != nil {
		return "", false
	}
	return hashSessionID(t), true
}
