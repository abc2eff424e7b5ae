package indigoclient

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/bluesky-social/indigo/atproto/atclient"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Session is a ready OAuth session (a ginoauth.OAuthSession) backed by an
// indigo oauth.ClientSession.
type Session struct {
	cs     *oauth.ClientSession
	client *http.Client
}

// DID implements ginoauth.OAuthSession.
func (s *Session) DID() string { return s.cs.Data.AccountDID.String() }

// HostURL implements ginoauth.OAuthSession.
func (s *Session) HostURL() string { return s.cs.Data.HostURL }

// Scopes implements ginoauth.OAuthSession.
func (s *Session) Scopes() []string { return slices.Clone(s.cs.Data.Scopes) }

// Do implements ginoauth.OAuthSession with indigo's DoWithAuth: DPoP proof
// per request, nonce updates, and one token refresh on invalid_token.
func (s *Session) Do(req *http.Request) (*http.Response, error) {
	nsid, _ := syntax.ParseNSID(strings.TrimPrefix(req.URL.Path, "/xrpc/"))
	return s.cs.DoWithAuth(s.client, req, nsid)
}

// APIClient returns indigo's XRPC client for this session, for typed calls
// such as c.Post(ctx, "com.atproto.repo.createRecord", body, &out).
func (s *Session) APIClient() *atclient.APIClient { return s.cs.APIClient() }

// RefreshTokens forces a token refresh now and stores the rotated tokens.
func (s *Session) RefreshTokens(ctx context.Context) error {
	_, err := s.cs.RefreshTokens(ctx)
	return err
}

// ClientSession returns the underlying indigo session.
func (s *Session) ClientSession() *oauth.ClientSession { return s.cs }
