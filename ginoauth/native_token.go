package ginoauth

import (
	"context"
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
	u, reason, err := m.sessions.read(c.Request.Context(), token, kindMobile)
	if err == nil && u == nil {
		reason = m.noteEndedSession(c, token, reason)
	}
	return u, reason, err
}

// rotateMobileToken gives the native app of this request (by its bearer
// token) a new session token, after checking with the authorization server
// that its login still holds (a coordinated token refresh).
//
// Rotations of one login are serialised by its device lock
// (session_lock.go), on every instance sharing the store, and each one
// re-reads the token's record under it. So every rotation of a token that
// succeeds answers the same successor, however many run at once: the first
// decides the successor and records it, sealed, in the old token's record
// (which then keeps working for Mobile.RefreshGrace); the others, and any
// retry within the grace window, answer that one.
//
// The old record names the successor before the successor is stored: a
// rotation that fails between the two answers 503 and leaves the old token
// valid for the grace window, and a retry stores the successor it named.
// A successor is never stored unless the old record names it, so a failed
// rotation cannot leave a second device behind.
//
// When the login is gone the device session is ended and the error is a
// *SessionError (401): never a fresh token. Any other failure (storage,
// the authorization server) keeps the session and the old token, and the
// route answers 503.
func (m *Manager) rotateMobileToken(c *gin.Context) (*mobileSession, error) {
	if _, ok := bearerToken(c.Request); !ok {
		return nil, &SessionError{Code: CodeNotLoggedIn}
	}
	u, err := m.ValidateSession(c)
	if err != nil {
		return nil, err
	}
	// The work under the lock stops before its lease could lapse.
	ctx, release, err := m.sessions.lockDevice(c.Request.Context(), u.record())
	if err != nil {
		return nil, err
	}
	defer release()

	// The record as it is now: the request's copy may come from the cache
	// or predate a rotation on another instance.
	hash := u.sessionHash
	var rec sessionRecord
	switch err := m.sessions.get(ctx, hash, &rec); {
	case errors.Is(err, storage.ErrNotFound):
		return nil, &SessionError{Code: CodeNotLoggedIn}
	case err != nil:
		return nil, err
	}
	if !rec.live(m.now()) {
		return nil, &SessionError{Code: CodeNotLoggedIn}
	}
	if rec.Successor != "" { // rotated already: answer its successor
		token, err := m.openSuccessor(hash, rec.Successor)
		if err != nil {
			// Sealed under a secret no longer configured: the successor
			// cannot be told again, and another must not be made.
			return nil, &SessionError{Code: CodeInvalidToken, Err: err}
		}
		return m.storeSuccessor(ctx, hash, &rec, token, true)
	}

	if rec.OAuthSessionID != "" {
		scopes, err := m.refreshForRotation(ctx, hash, &rec)
		if err != nil {
			return nil, err
		}
		if len(scopes) > 0 {
			rec.Scopes = scopes
		}
	}
	token := randomToken(sessionIDBytes)
	sealed, err := m.sealSuccessor(hash, token)
	if err != nil {
		return nil, err
	}
	old := rec
	old.GraceUntil, old.Successor = m.now().Add(m.cfg.Mobile.RefreshGrace), sealed
	if ttl := old.ttl(m.now()); ttl <= 0 {
		return nil, &SessionError{Code: CodeSessionExpired}
	} else if err := m.sessions.put(ctx, hash, &old, ttl); err != nil {
		return nil, err // nothing changed: the old token works as before
	}
	// A chain is never longer than two: the token before this one (in its
	// own grace window) ends now, so a logout with the new token ends all.
	if rec.Previous != "" {
		_ = m.sessions.deleteRecords(ctx, rec.Previous) // else it ends with its grace window
	}
	return m.storeSuccessor(ctx, hash, &old, token, false)
}

// storeSuccessor makes sure the successor token that the rotated-out
// record old (under hash) names is stored, storing it if an earlier
// rotation could not (maybeStored), and answers it. The caller holds the
// device lock.
func (m *Manager) storeSuccessor(ctx context.Context, hash string, old *sessionRecord, token string, maybeStored bool) (*mobileSession, error) {
	next := *old
	next.GraceUntil, next.Successor, next.Previous = time.Time{}, "", hash
	if maybeStored {
		var stored sessionRecord
		switch err := m.sessions.get(ctx, hashSessionID(token), &stored); {
		case err == nil:
			return mobileAnswer(token, &stored), nil
		case !errors.Is(err, storage.ErrNotFound):
			return nil, err
		}
	}
	if _, err := m.sessions.createAs(ctx, token, &next); err != nil {
		return nil, err // the old token keeps working for its grace window; a retry stores this one
	}
	_ = m.sessions.unindex(ctx, old.DID, hash) // the device is listed once, by its new token
	return mobileAnswer(token, &next), nil
}

// refreshForRotation checks with the authorization server that the login
// of rec (under hash) still holds, by refreshing its tokens, and returns
// the scopes granted now. A login the server ended ends the device session
// (the caller holds its device lock) and gives a *SessionError.
func (m *Manager) refreshForRotation(ctx context.Context, hash string, rec *sessionRecord) ([]string, error) {
	gone := func(reason EndReason, cause error) error {
		if err := m.sessions.endLocked(ctx, hash, rec, reason); err != nil {
			return err
		}
		return &SessionError{Code: CodeOAuthSessionGone, Err: cause}
	}
	sess, err := m.client.Resume(ctx, rec.DID, rec.OAuthSessionID)
	switch {
	case errors.Is(err, oauthclient.ErrSessionGone):
		return nil, gone(EndRevoked, err)
	case err != nil:
		return nil, storage.Wrap("get", err)
	}
	r, ok := sess.(oauthclient.Refresher)
	if !ok {
		return sess.Scopes(), nil
	}
	// The wait for the client's refresh lock is bounded, so that this
	// device lock is released well within its lease.
	rctx, cancel := context.WithTimeout(ctx, rotationRefreshWait)
	defer cancel()
	switch err := r.RefreshTokens(rctx); {
	case errors.Is(err, oauthclient.ErrSessionGone):
		reason := goneReason(err, refusedReason(rec, m.now()))
		gerr := gone(reason, err)
		var se *SessionError
		if reason == EndRevokedAtServer && errors.As(gerr, &se) {
			m.sessions.emit(EventGrantRevoked, reason, rec, hash)
		}
		return nil, gerr
	case err != nil:
		if isStorageErr(err) {
			return nil, err
		}
		return nil, &OAuthFlowError{Code: CodeServerUnavailable, Message: flowMessages[CodeServerUnavailable], Err: err}
	}
	return sess.Scopes(), nil
}

// rotationRefreshWait bounds how long a rotation waits for the OAuth
// client's refresh lock.
const rotationRefreshWait = 20 * time.Second

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
// {"success": false, "error"} on failure. 401 means the login is over;
// 503 (with Retry-After) that the rotation could not complete now, and the
// token sent still works for a retry.
func (m *Manager) mobileRefreshHandler(legacy bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("Cache-Control", "no-store")
		s, err := m.rotateMobileToken(c)
		if err != nil {
			r := m.replyFor(c, err)
			if r.Status == http.StatusUnauthorized {
				c.Header("WWW-Authenticate", `Bearer error="invalid_token"`)
			}
			if r.Status >= http.StatusInternalServerError {
				// The rotation could not complete; the old token still
				// works. 503 tells the app to retry, never to log in again.
				r.Status = http.StatusServiceUnavailable
				c.Header("Retry-After", "5")
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
