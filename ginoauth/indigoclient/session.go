package indigoclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bluesky-social/indigo/atproto/atclient"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// session is a ready OAuth session (a oauthclient.Session) backed by an
// indigo oauth.ClientSession, as Client.Resume returns it.
//
// Token refresh is coordinated across requests and app instances, because a
// refresh token is single use and the reference PDS kills the whole session
// when a spent one comes back ("Refresh token replayed"). When the PDS says
// the access token is invalid, the session takes a lock named after the session
// (the Storage's storage.Locker, so it holds across every instance sharing
// the storage; a process-local lock otherwise), re-reads the stored session,
// and refreshes only if nobody else has rotated the tokens meanwhile. So N
// concurrent requests on M instances make exactly one refresh grant.
//
// Once the lock is held, the refresh and the save of its tokens run
// detached from the request (a browser that goes away cannot drop rotated
// tokens) within a budget inside the lock's longest hold; on a store with
// storage.RenewableLocker the lease is short and renewed meanwhile, and
// the re-read and the token request stop before it could lapse unrenewed
// (so a crashed holder blocks the session for seconds); a failed save is
// retried within that budget; the lock is released at the end, and a
// release that fails is retried in the background so that other instances
// do not wait out the lease. Tokens are only ever written by the lock
// holder, and never over newer ones (see AuthStore).
//
// If the save still fails when the budget is spent (storage down), the new
// tokens are not thrown away: this process keeps them in memory, uses them
// for the session's requests, keeps the refresh lock, and saves them in the
// background as soon as storage answers (logging an error until then). The
// one case that still loses the login is this process exiting before
// storage comes back: the stored, spent refresh token then fails at the
// next refresh and the user logs in again.
//
// A refresh the server refuses for good (invalid_grant: revoked, expired or
// replayed) deletes the stored session and returns a an error wrapping
// oauthclient.ErrSessionGone, as does a session deleted while its refresh
// ran (whose new tokens are then revoked, since nobody holds them). A
// network failure returns an error and logs nobody out.
type session struct {
	c   *Client
	did syntax.DID
	id  string

	mu sync.Mutex // guards cs, which a refresh replaces
	cs *oauth.ClientSession
}

func (s *session) current() *oauth.ClientSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cs
}

// DID implements oauthclient.Session.
func (s *session) DID() string { return s.did.String() }

// HostURL implements oauthclient.Session.
func (s *session) HostURL() string { return s.current().Data.HostURL }

// Scopes implements oauthclient.Session.
func (s *session) Scopes() []string { return slices.Clone(s.current().Data.Scopes) }

// Do implements oauthclient.Session: it sends req with the access token
// and a DPoP proof, answers one DPoP nonce challenge, and refreshes the
// tokens (coordinated, see Session) once when the PDS reports invalid_token.
func (s *session) Do(req *http.Request) (*http.Response, error) {
	return s.doWithAuth(s.c.app.Client, req)
}

// DoWithAuth implements indigo's atclient.AuthMethod, so that APIClient's
// calls get the same coordinated refresh.
func (s *session) DoWithAuth(c *http.Client, req *http.Request, _ syntax.NSID) (*http.Response, error) {
	return s.doWithAuth(c, req)
}

func (s *session) doWithAuth(hc *http.Client, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	htu := dpopURL(req.URL)
	nonceRetried, refreshed := false, false
	for {
		cs := s.current()
		access, nonce := cs.GetHostAccessData()
		proof, err := cs.NewHostDPoP(req.Method, htu)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "DPoP "+access)
		req.Header.Set("DPoP", proof)
		resp, err := hc.Do(req) //nolint:gosec // the PDS URL comes from the DID document; the default client refuses private addresses
		if err != nil {
			return nil, err
		}
		challenge := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || challenge == "" {
			return resp, nil
		}
		switch newNonce := resp.Header.Get("DPoP-Nonce"); {
		case strings.Contains(challenge, `error="use_dpop_nonce"`) && newNonce != "" && newNonce != nonce && !nonceRetried:
			nonceRetried = true
			cs.UpdateHostDPoPNonce(ctx, newNonce)
		case strings.Contains(challenge, `error="invalid_token"`) && !refreshed:
			refreshed = true
			drain(resp)
			if err := s.refresh(ctx, access); err != nil {
				return nil, err
			}
			if req, err = rewind(req); err != nil {
				return nil, err
			}
			continue
		default:
			return resp, nil // some other auth failure: the caller sees it
		}
		drain(resp)
		if req, err = rewind(req); err != nil {
			return nil, err
		}
	}
}

// RefreshTokens forces a (coordinated) token refresh now, as if the PDS had
// just rejected the current access token.
func (s *session) RefreshTokens(ctx context.Context) error {
	access, _ := s.current().GetHostAccessData()
	return s.refresh(ctx, access)
}

// refresh replaces the access token that the PDS rejected, unless another
// request or instance already did.
func (s *session) refresh(ctx context.Context, rejected string) error {
	c := s.c
	began := time.Now()
	held, err := c.lockWithin(ctx, refreshLockName(s.did, s.id))
	c.metrics.RefreshLockWaited(time.Since(began))
	if err != nil {
		return fmt.Errorf("indigoclient: waiting for the refresh lock: %w", err)
	}
	c.watchLease(held, s.did, s.id)
	// From here on the request's cancellation no longer applies: a refresh
	// whose answer is lost makes the next one a replay.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshBudget)
	defer cancel()
	release := true
	defer func() {
		if release {
			c.release(held)
		}
	}()
	// But the lease's end does: the re-read and the token request stop
	// before another instance can take the lock and refresh the same
	// tokens. (The saves below may outlive it: they only ever replace the
	// tokens this refresh spent.)
	work, stopWork := held.Bind(ctx)
	defer stopWork()

	ls, err := c.load(work, s.did, s.id) // the newest copy, as of now
	if errors.Is(err, storage.ErrNotFound) {
		return gone(err)
	}
	if err != nil {
		return err
	}
	fresh, spent := ls.cs, ls.spent
	if access, _ := fresh.GetHostAccessData(); access != rejected {
		s.swap(fresh) // someone else refreshed: use their tokens
		return nil
	}
	var clientKey *ClientKey
	if c.keys != nil {
		// The session's own key, whatever is current now. A retired key
		// ends the login (ErrKeyRetired; the Manager revokes it), a key
		// this instance lacks does not: the stored tokens stay good.
		if clientKey, err = c.keyFor(ls.kid, false); err != nil {
			return err
		}
	}
	granted := time.Now()
	previousScopes := slices.Clone(fresh.Data.Scopes)
	if err := work.Err(); err != nil {
		return fmt.Errorf("indigoclient: token refresh not started: %w", context.Cause(work))
	}
	err = c.refreshGrant(work, fresh, clientKey)
	c.metrics.RefreshFinished(refreshOutcome(err), time.Since(granted))
	if err != nil {
		if !isTerminalRefreshError(err) {
			if work.Err() != nil && ctx.Err() == nil {
				err = fmt.Errorf("%w (%w)", err, context.Cause(work))
			}
			return fmt.Errorf("indigoclient: token refresh: %w", err)
		}
		c.log.Info("OAuth session ended by the authorization server", "did", s.did, "session", shortHash(s.id), "err", err)
		c.rescued.drop(s.did, s.id)
		if derr := c.store.DeleteSession(ctx, s.did, s.id); derr != nil {
			return derr
		}
		c.unindexKey(ctx, ls.kid, sessionMember(s.did, s.id))
		return gone(err)
	}
	rotated := *fresh.Data
	switch err := c.saveRotated(ctx, rotated, spent); {
	case err == nil:
		s.swap(fresh)
		c.notifyRefresh(ctx, rotated, previousScopes, true)
		return nil
	case errors.Is(err, storage.ErrNotFound):
		// Deleted while we refreshed (expired, or ended without waiting
		// for this lock): nobody may hold the new tokens.
		c.log.Info("OAuth session ended during a token refresh; revoking the new tokens", "did", s.did, "session", shortHash(s.id))
		if rerr := c.revokeSession(ctx, fresh, clientKey); rerr != nil {
			c.log.Warn("revoking the tokens of an ended session failed", "did", s.did, "session", shortHash(s.id), "err", rerr)
		}
		return gone(err)
	case errors.Is(err, errStaleTokens):
		// Only possible if a lease lapsed under a stalled holder; the
		// stored tokens are not ours to overwrite.
		return fmt.Errorf("indigoclient: token refresh raced another instance: %w", err)
	default:
		release = false // the rescue keeps the lock until the tokens are saved
		c.rescue(rotated, ls.kid, spent, held)
		s.swap(fresh)
		c.notifyRefresh(ctx, rotated, previousScopes, false)
		return nil
	}
}

func (s *session) swap(cs *oauth.ClientSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cs = cs
}

// refreshOutcome names a refresh grant's result for metrics.
func refreshOutcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case isTerminalRefreshError(err):
		return "refused"
	}
	return "network"
}

func refreshLockName(did syntax.DID, sessionID string) string {
	sum := sha256.Sum256([]byte(did.String() + " " + sessionID))
	return "oauth-refresh:" + hex.EncodeToString(sum[:16])
}

// dpopURL is the request URL without query and fragment, as DPoP's htu.
func dpopURL(u *url.URL) string {
	c := *u
	c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = "", false, "", ""
	return c.String()
}

// rewind returns a copy of req whose body can be sent again.
func rewind(req *http.Request) (*http.Request, error) {
	retry := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, errors.New("indigoclient: cannot retry a request whose body cannot be re-read")
		}
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		retry.Body = body
	}
	return retry, nil
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// APIClient returns indigo's XRPC client for this session, for typed calls
// such as c.Post(ctx, "com.atproto.repo.createRecord", body, &out). Its
// requests go through this Session, with the same coordinated refresh.
func (s *session) APIClient() *atclient.APIClient {
	cs := s.current()
	api := cs.APIClient()
	api.Auth = s
	return api
}

// APIClient returns indigo's XRPC client over any oauthclient.Session,
// such as the one Manager.OAuthSession returns, for typed calls:
//
//	api := indigoclient.APIClient(sess)
//	err := api.Post(ctx, "com.atproto.repo.createRecord", body, &out)
//
// Its requests go through sess.Do, so they get the session's coordinated
// refresh, and a refused refresh ends the device session.
func APIClient(sess oauthclient.Session) *atclient.APIClient {
	did := syntax.DID(sess.DID())
	return &atclient.APIClient{Host: sess.HostURL(), Auth: sessionAuth{sess}, AccountDID: &did}
}

// sessionAuth is an atclient.AuthMethod that sends requests through an
// OAuthSession.
type sessionAuth struct{ sess oauthclient.Session }

func (a sessionAuth) DoWithAuth(_ *http.Client, req *http.Request, _ syntax.NSID) (*http.Response, error) {
	return a.sess.Do(req)
}
