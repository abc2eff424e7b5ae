package ginoauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// OAuthSession returns a ready OAuth session for the request's user, for
// calls to their PDS. Errors: a *SessionError
// when nobody is logged in or when the OAuth session is gone (revoked,
// expired, or its refresh failed for good; the local session is then ended
// too, so the user is asked to log in again), or a *StorageError.
//
// The session it returns is tied to the request's device session: when one
// of its calls learns that the OAuth session is gone (a refresh refused for
// good), that call ends the device session at once, so the user is logged
// out on every instance from the next request on.
func (m *Manager) OAuthSession(c *gin.Context) (OAuthSession, error) {
	u, err := m.ValidateSession(c)
	if err != nil {
		return nil, err
	}
	if u.oauthSessionID == "" {
		return nil, ErrAuthenticationOnly
	}
	sess, err := m.client.Resume(c.Request.Context(), u.DID, u.oauthSessionID)
	if err == nil {
		if s := sess.Scopes(); len(s) > 0 {
			u.Scopes = s // as of the last refresh, for this request
		}
		return &deviceBoundSession{OAuthSession: sess, m: m, hash: u.sessionHash, rec: *u.record()}, nil
	}
	if errors.Is(err, ErrNotFound) {
		if derr := m.endDevice(c.Request.Context(), u.sessionHash, u.record(), EndRevoked); derr != nil {
			return nil, derr
		}
		m.clearSessionCookie(c)
		setState(c, nil, SessionOAuthGone)
		return nil, &SessionError{Code: SessionOAuthGone, Err: err}
	}
	return nil, storage.Wrap("get", err)
}

// deviceBoundSession is the client's OAuth session for one device session.
type deviceBoundSession struct {
	OAuthSession
	m     *Manager
	hash  string
	rec   sessionRecord // what ending the device session needs
	ended sync.Once
}

// Do implements OAuthSession.
func (s *deviceBoundSession) Do(req *http.Request) (*http.Response, error) {
	resp, err := s.OAuthSession.Do(req)
	s.endIfGone(err)
	return resp, err
}

// RefreshTokens forces a coordinated token refresh now, when the OAuth
// client's session supports it (indigoclient's does).
func (s *deviceBoundSession) RefreshTokens(ctx context.Context) error {
	r, ok := s.OAuthSession.(interface{ RefreshTokens(context.Context) error })
	if !ok {
		return errors.New("ginoauth: this OAuth client cannot refresh on demand")
	}
	err := r.RefreshTokens(ctx)
	s.endIfGone(err)
	return err
}

// Unwrap returns the OAuth client's own session (for example an
// *indigoclient.Session), for features of the client this package does not
// cover. Calls on it do not end the device session by themselves.
func (s *deviceBoundSession) Unwrap() OAuthSession { return s.OAuthSession }

// endIfGone ends the device session when err says the OAuth session is gone.
func (s *deviceBoundSession) endIfGone(err error) {
	var se *SessionError
	if !errors.As(err, &se) || se.Code != SessionOAuthGone {
		return
	}
	s.ended.Do(func() {
		// The request may be over; the user must be logged out anyway.
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.m.cfg.StorageTimeout)
		defer cancel()
		if err := s.m.endDevice(ctx, s.hash, &s.rec, EndRefreshRefused); err != nil {
			s.m.log.Error("ending a session whose OAuth session is gone failed", "session", s.hash[:8], "err", err)
			return
		}
		s.m.log.Info("session ended", "reason", EndRefreshRefused, "session", s.hash[:8])
	})
}

// XRPCError is a non-2xx answer from a PDS XRPC endpoint.
type XRPCError struct {
	StatusCode int
	Name       string // the "error" field of the XRPC error body
	Message    string // the "message" field
}

func (e *XRPCError) Error() string {
	return fmt.Sprintf("xrpc: HTTP %d: %s: %s", e.StatusCode, e.Name, e.Message)
}

// maxXRPCResponse bounds how much of a PDS answer is read into memory.
const maxXRPCResponse = 16 << 20

// XRPCQuery calls the XRPC query (GET) nsid on the session's PDS with params
// and decodes the JSON answer into out (which may be nil). Pass
// c.Request.Context() from a handler (a *gin.Context is accepted too and
// replaced by its request's context: gin reuses its contexts after the
// handler returns, while the HTTP client may still look at ctx).
func XRPCQuery(ctx context.Context, sess OAuthSession, nsid string, params url.Values, out any) error {
	ctx = requestContext(ctx)
	u := strings.TrimRight(sess.HostURL(), "/") + "/xrpc/" + nsid
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	return doXRPC(sess, req, out)
}

// XRPCProcedure calls the XRPC procedure (POST) nsid on the session's PDS
// with in as its JSON body and decodes the JSON answer into out (may be nil).
// ctx is treated as in XRPCQuery.
func XRPCProcedure(ctx context.Context, sess OAuthSession, nsid string, in, out any) error {
	ctx = requestContext(ctx)
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	u := strings.TrimRight(sess.HostURL(), "/") + "/xrpc/" + nsid
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return doXRPC(sess, req, out)
}

// requestContext swaps a *gin.Context for its request's context, which
// outlives the pooled gin.Context safely.
func requestContext(ctx context.Context) context.Context {
	if c, ok := ctx.(*gin.Context); ok && c.Request != nil {
		return c.Request.Context()
	}
	return ctx
}

func doXRPC(sess OAuthSession, req *http.Request, out any) error {
	req.Header.Set("Accept", "application/json")
	resp, err := sess.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxXRPCResponse)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var eb struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		_ = json.NewDecoder(body).Decode(&eb)
		return &XRPCError{StatusCode: resp.StatusCode, Name: eb.Error, Message: eb.Message}
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, body)
		return nil
	}
	return json.NewDecoder(body).Decode(out)
}
