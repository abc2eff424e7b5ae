package ginoauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// Background access (Config.BackgroundAccess): each account's newest grant
// is kept for OAuthSessionForAccount on its own lifetime, under
// bg:{did}, so background jobs keep working after the account's last device
// session has ended. A device session whose grant is the kept one ends
// without revoking it; the grant ends with EndAllSessions, a refused
// refresh, a newer login's grant (when no device session still uses it),
// or its own limit (the record's TTL).

const backgroundPrefix = "bg:"

// backgroundGrant is what bg:{did} holds.
type backgroundGrant struct {
	OAuthSessionID string    `json:"oauth_session_id"`
	CreatedAt      time.Time `json:"created_at"`
}

// keepForBackground makes grant the account's background grant. The one it
// replaces is revoked unless a live device session still uses it (it is
// then revoked when that session ends). Failures are logged: the login
// itself has succeeded.
func (m *Manager) keepForBackground(ctx context.Context, grant *oauthclient.Grant) {
	if !m.cfg.BackgroundAccess || grant.OAuthSessionID == "" {
		return
	}
	var old backgroundGrant
	oldErr := m.getJSON(ctx, backgroundPrefix+grant.DID, &old)
	ends := grant.EndsAt
	if ends.IsZero() {
		ends = m.now().Add(fallbackMaxAge)
	}
	rec := backgroundGrant{OAuthSessionID: grant.OAuthSessionID, CreatedAt: m.now()}
	if err := m.setJSON(ctx, backgroundPrefix+grant.DID, rec, ends.Sub(m.now())); err != nil {
		m.log.Warn("could not keep the grant for background access", "did", grant.DID, "err", err)
		return
	}
	if oldErr == nil && old.OAuthSessionID != grant.OAuthSessionID && !m.sessions.grantInUse(ctx, grant.DID, old.OAuthSessionID) {
		m.revoke(ctx, grant.DID, old.OAuthSessionID, "")
	}
}

// grantInUse reports whether a live device session of did uses the OAuth
// session id (true when that cannot be known, so that nothing is revoked
// on a guess).
func (ds *deviceSessions) grantInUse(ctx context.Context, did, oauthSessionID string) bool {
	_, recs, err := ds.list(ctx, did)
	if err != nil {
		return true
	}
	for _, rec := range recs {
		if rec.OAuthSessionID == oauthSessionID {
			return true
		}
	}
	return false
}

// keptForBackground reports whether rec's grant is its account's
// background grant (false when that cannot be read: the grant is then
// revoked with its device session, the safe side).
func (ds *deviceSessions) keptForBackground(ctx context.Context, rec *sessionRecord) bool {
	if !ds.background || rec.OAuthSessionID == "" {
		return false
	}
	ctx, cancel := ds.op(ctx)
	defer cancel()
	raw, err := ds.store.Get(ctx, backgroundPrefix+rec.DID)
	if err != nil {
		return false
	}
	var bg backgroundGrant
	return json.Unmarshal(raw, &bg) == nil && bg.OAuthSessionID == rec.OAuthSessionID
}

// forgetBackground deletes did's background grant record if it names
// oauthSessionID ("" for whichever it names), and returns the id it named
// ("" when nothing was deleted).
func (ds *deviceSessions) forgetBackground(ctx context.Context, did, oauthSessionID string) string {
	if !ds.background {
		return ""
	}
	octx, cancel := ds.op(ctx)
	raw, err := ds.store.Get(octx, backgroundPrefix+did)
	cancel()
	var bg backgroundGrant
	if err != nil || json.Unmarshal(raw, &bg) != nil || (oauthSessionID != "" && bg.OAuthSessionID != oauthSessionID) {
		return ""
	}
	octx, cancel = ds.op(ctx)
	defer cancel()
	if err := ds.store.Delete(octx, backgroundPrefix+did); err != nil {
		return ""
	}
	return bg.OAuthSessionID
}

// dropBackground forgets did's background grant if it is oauthSessionID
// ("" for whichever it is), and revokes it when revoke is set.
func (m *Manager) dropBackground(ctx context.Context, did, oauthSessionID string, revoke bool) {
	if id := m.sessions.forgetBackground(ctx, did, oauthSessionID); id != "" && revoke {
		m.revoke(ctx, did, id, "")
	}
}

// backgroundSession returns a ready session of did's background grant, or
// storage.ErrNotFound when there is none.
func (m *Manager) backgroundSession(ctx context.Context, did string) (oauthclient.Session, error) {
	var bg backgroundGrant
	if err := m.getJSON(ctx, backgroundPrefix+did, &bg); err != nil {
		return nil, err
	}
	sess, err := m.client.Resume(ctx, did, bg.OAuthSessionID)
	if errors.Is(err, oauthclient.ErrSessionGone) {
		m.dropBackground(ctx, did, bg.OAuthSessionID, false)
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, storage.Wrap("get", err)
	}
	return &backgroundBoundSession{Session: sess, m: m, did: did, id: bg.OAuthSessionID}, nil
}

// backgroundBoundSession is the background grant's session: when one of
// its calls learns that the grant is gone, the grant is forgotten.
type backgroundBoundSession struct {
	oauthclient.Session
	m       *Manager
	did, id string
	ended   sync.Once
}

// Do implements oauthclient.Session.
func (s *backgroundBoundSession) Do(req *http.Request) (*http.Response, error) {
	resp, err := s.Session.Do(req)
	if err == nil {
		if err := s.m.sessions.identity.endedBy(req.Context(), resp, s.did); err != nil {
			return nil, err
		}
	}
	return resp, s.endIfGone(err)
}

// RefreshTokens implements oauthclient.Refresher when the client's session
// does.
func (s *backgroundBoundSession) RefreshTokens(ctx context.Context) error {
	r, ok := s.Session.(oauthclient.Refresher)
	if !ok {
		return errors.New("ginoauth: this OAuth client cannot refresh on demand")
	}
	return s.endIfGone(r.RefreshTokens(ctx))
}

func (s *backgroundBoundSession) endIfGone(err error) error {
	if !errors.Is(err, oauthclient.ErrSessionGone) {
		return err
	}
	s.ended.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.m.cfg.StorageTimeout)
		defer cancel()
		s.m.dropBackground(ctx, s.did, s.id, false)
	})
	return &SessionError{Code: CodeOAuthSessionGone, Err: err}
}
