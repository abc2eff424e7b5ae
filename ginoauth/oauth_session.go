package ginoauth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// This file reaches the account's PDS: a ready OAuth session for the
// request's user, or for an account outside a request, tied to its device
// session so that a login the server ended ends the device session too.
//
// Calls go through the session's Do, which takes a plain *http.Request on
// the PDS (sess.HostURL() + "/xrpc/" + nsid) and adds the DPoP-bound
// access token, answers nonce challenges and refreshes the tokens;
// indigoclient.APIClient(sess) wraps any session in indigo's typed XRPC
// client.

// OAuthSession returns a ready OAuth session for the request's user, for
// calls to their PDS. Errors: a *SessionError when nobody is logged in or
// when the OAuth session is gone (revoked, expired, or its refresh failed
// for good; the device session is then ended too, so the user is asked to
// log in again), ErrAuthenticationOnly, or a *storage.Error.
//
// The session it returns is tied to the request's device session: when one
// of its calls learns that the OAuth session is gone (a refresh refused for
// good), that call ends the device session at once, so the user is logged
// out on every instance from the next request on.
func (m *Manager) OAuthSession(c *gin.Context) (oauthclient.Session, error) {
	u, err := m.ValidateSession(c)
	if err != nil {
		return nil, err
	}
	if u.oauthSessionID == "" {
		return nil, ErrAuthenticationOnly
	}
	sess, err := m.client.Resume(c.Request.Context(), u.DID, u.oauthSessionID)
	if err == nil {
		bound := &deviceBoundSession{Session: sess, ds: m.sessions, hash: u.sessionHash, rec: *u.record(), known: u.Scopes}
		if s := sess.Scopes(); len(s) > 0 {
			u.Scopes = s // as of the last refresh, for this request
		}
		bound.syncScopes(c.Request.Context())
		return bound, nil
	}
	if errors.Is(err, oauthclient.ErrSessionGone) {
		reason := goneReason(err, EndRevoked)
		if derr := m.sessions.end(c.Request.Context(), u.sessionHash, u.record(), reason); derr != nil {
			return nil, derr
		}
		if derr := m.dropActive(c); derr != nil { // the browser's other accounts stay
			return nil, derr
		}
		setState(c, nil, CodeOAuthSessionGone)
		return nil, &SessionError{Code: CodeOAuthSessionGone, Err: err, Reason: reason, LoginURL: m.loginAgainURL(u.DID, c.Request)}
	}
	return nil, storage.Wrap("get", err)
}

// OAuthSessionForAccount returns a ready OAuth session of did's newest
// grant, for work outside a request: background jobs, webhooks. With
// Config.BackgroundAccess that is the grant kept for background use, which
// outlives the account's device sessions; otherwise (or when none is kept)
// the grant of the device session seen last (then the newest). It goes
// through the same coordinated refresh as a request, and a refused
// refresh ends what used the grant. An account with no grant gives a
// *SessionError with CodeNotLoggedIn; authentication-only logins give
// ErrAuthenticationOnly. Without BackgroundAccess it needs a
// storage.Indexer.
func (m *Manager) OAuthSessionForAccount(ctx context.Context, did string) (oauthclient.Session, error) {
	if m.cfg.BackgroundAccess {
		sess, err := m.backgroundSession(ctx, did)
		if err == nil || !errors.Is(err, storage.ErrNotFound) {
			return sess, err
		}
	}
	hashes, recs, err := m.sessions.list(ctx, did)
	if err != nil {
		return nil, err
	}
	best := -1
	var bestSeen time.Time
	for i, rec := range recs {
		if rec.OAuthSessionID == "" {
			continue
		}
		if seen := m.sessions.lastSeen(ctx, hashes[i], rec.CreatedAt); best < 0 || seen.After(bestSeen) {
			best, bestSeen = i, seen
		}
	}
	if best < 0 {
		if len(recs) > 0 {
			return nil, ErrAuthenticationOnly
		}
		return nil, &SessionError{Code: CodeNotLoggedIn}
	}
	rec := recs[best]
	sess, err := m.client.Resume(ctx, rec.DID, rec.OAuthSessionID)
	if err != nil {
		if errors.Is(err, oauthclient.ErrSessionGone) {
			_ = m.sessions.end(ctx, hashes[best], &rec, goneReason(err, EndRevoked))
			return nil, &SessionError{Code: CodeOAuthSessionGone, Err: err}
		}
		return nil, storage.Wrap("get", err)
	}
	bound := &deviceBoundSession{Session: sess, ds: m.sessions, hash: hashes[best], rec: rec, known: rec.Scopes}
	bound.syncScopes(ctx)
	return bound, nil
}

// ErrAuthenticationOnly is what OAuthSession returns under
// Config.AuthenticationOnly: no OAuth session is kept.
var ErrAuthenticationOnly = errors.New("ginoauth: authentication-only logins keep no OAuth session")

// deviceBoundSession is the client's OAuth session for one device session.
// A login the server ended ends the device session; scopes a refresh
// changed are written to the device session's record, so that every check
// of what the session may do (User.Allows, User.Scopes, RequireScopes, the
// session route) reads the scopes of the last refresh from the one record
// a session check reads anyway.
type deviceBoundSession struct {
	oauthclient.Session
	ds    *deviceSessions
	hash  string
	rec   sessionRecord // what ending the device session needs
	ended sync.Once

	mu    sync.Mutex
	known []string // the scopes the device session's record holds
}

// Do implements oauthclient.Session.
func (s *deviceBoundSession) Do(req *http.Request) (*http.Response, error) {
	resp, err := s.Session.Do(req)
	if err == nil {
		s.syncScopes(req.Context())
		if err := s.ds.identity.endedBy(req.Context(), resp, s.rec.DID); err != nil {
			return nil, err
		}
	}
	return resp, s.endIfGone(err)
}

// RefreshTokens implements oauthclient.Refresher when the client's session
// does (indigoclient's does).
func (s *deviceBoundSession) RefreshTokens(ctx context.Context) error {
	r, ok := s.Session.(oauthclient.Refresher)
	if !ok {
		return errors.New("ginoauth: this OAuth client cannot refresh on demand")
	}
	err := r.RefreshTokens(ctx)
	if err == nil {
		s.syncScopes(ctx)
	}
	return s.endIfGone(err)
}

// syncScopes brings the device session's record up to date when the
// OAuth session's scopes differ from what it holds: a refresh made by
// another process, or one whose own update failed (see followScopes). A
// failure is logged and tried again at the next call.
func (s *deviceBoundSession) syncScopes(ctx context.Context) {
	now := s.Scopes()
	s.mu.Lock()
	same := len(now) == 0 || slices.Equal(now, s.known)
	s.mu.Unlock()
	if same {
		return
	}
	// The request may be over; the record must follow the grant anyway.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*s.ds.timeout)
	defer cancel()
	if !s.ds.followScopes(ctx, s.hash, now) {
		s.ds.log.Warn("recording the scopes a refresh changed failed; retried at the next call", "session", shortRef(s.hash))
		return
	}
	s.mu.Lock()
	s.known = now
	s.mu.Unlock()
}

// endIfGone ends the device session when err says the OAuth session is
// gone, and returns the error the caller should see: a *SessionError with
// CodeOAuthSessionGone in that case, err otherwise.
func (s *deviceBoundSession) endIfGone(err error) error {
	if !errors.Is(err, oauthclient.ErrSessionGone) {
		return err
	}
	s.ended.Do(func() {
		// The request may be over; the user must be logged out anyway.
		// Past its known limits the grant expired; before them the server
		// ended it (refusedReason).
		reason := goneReason(err, refusedReason(&s.rec, s.ds.now()))
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.ds.timeout)
		defer cancel()
		if (reason == EndRefreshRefused || reason == EndRevokedAtServer) && s.ds.identity.afterRefused != nil && s.ds.identity.afterRefused(ctx, s.rec.DID) {
			return // the account was taken down or deleted: its sessions ended with that reason
		}
		if err := s.ds.end(ctx, s.hash, &s.rec, reason); err != nil {
			s.ds.log.Error("ending a session whose OAuth session is gone failed", "session", shortRef(s.hash), "err", err)
			return
		}
		if reason == EndRevokedAtServer {
			s.ds.emit(EventGrantRevoked, reason, &s.rec, s.hash)
		}
		s.ds.log.Info("session ended", "reason", string(reason), "session", shortRef(s.hash))
	})
	var se *SessionError
	if errors.As(err, &se) {
		return err
	}
	return &SessionError{Code: CodeOAuthSessionGone, Err: err}
}
