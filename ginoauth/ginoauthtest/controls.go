package ginoauthtest

import (
	"slices"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Stats counts what the server has done since it started. Rejected requests
// are not counted in PARs, CodeGrants or RefreshGrants.
type Stats struct {
	PARs            int // pushed authorization requests accepted
	Approvals       int // authorization requests approved (page, Consent or auto-approve)
	Denials         int // authorization requests denied
	CodeGrants      int // successful authorization_code grants (sessions created)
	RefreshGrants   int // successful refresh_token grants (token rotations)
	TokenErrors     int // token requests refused, other than use_dpop_nonce challenges
	ReplaysDetected int // refresh tokens presented again after rotation (each ends its session)
	CodeReplays     int // authorization codes presented again (each ends the session it created)
	Revocations     int // revocation requests answered 200 (known or unknown tokens)
	SessionsRevoked int // sessions ended through the revocation endpoint, RevokeAll/RevokeToken, or because their client key left the client's metadata
	KeyMismatches   int // client assertions refused because another key than the session's (or the login's) signed them
	NonceChallenges int // use_dpop_nonce answers, at the authorization server and the PDS
	AccountsCreated int // accounts created by sign-up (prompt=create) at consent; not CreateAccount
	RepoStatusCalls int // com.atproto.sync.getRepoStatus requests answered
	ActiveSessions  int // sessions not ended and not past their lifetime, now
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	now := s.now()
	for _, sess := range s.sessions {
		if sess.endReason == "" && now.Before(sess.expires) {
			st.ActiveSessions++
		}
	}
	return st
}

// SessionInfo describes one OAuth session (one authorization and the chain
// of tokens refreshed from it), for assertions in tests.
type SessionInfo struct {
	ID                 string     // the server's id for the session (not a secret)
	DID                syntax.DID // the account (the token's sub)
	ClientID           string
	Scope              string // granted scope now, space separated: include: scopes expanded as of the last grant
	Confidential       bool   // authenticated with private_key_jwt
	ClientKeyID        string // kid of the client key the session is bound to (confidential clients)
	DPoPJKT            string // RFC 7638 thumbprint of the DPoP key the session is bound to
	AccessToken        string // the current access token (the only one accepted)
	AccessTokenExpires time.Time
	RefreshToken       string // the current refresh token (the only one that refreshes)
	Refreshes          int    // successful refresh grants
	Created            time.Time
	Expires            time.Time // the session lifetime cap; refreshing never extends it
	Active             bool      // not ended and not past Expires
	EndReason          string    // why it ended: "revoked", "refresh token replayed", "authorization code replayed", "session expired", "refresh token expired", "client key removed from the client metadata"; "" if it did not
}

// AuthorizationRequestInfo is a pushed authorization request the server
// accepted, as the client sent it, so that a test can check what a client
// asked for.
type AuthorizationRequestInfo struct {
	ClientID    string
	RedirectURI string
	Scope       string    // the requested scope, space separated, as sent (include: scopes not expanded)
	Prompt      string    // the prompt parameter; "" if none was sent
	LoginHint   string    // the login_hint parameter; "" if none was sent
	Created     time.Time // when it was accepted (server clock)
}

// AuthorizationRequests lists every pushed authorization request accepted
// so far, oldest first, whether or not it was used since.
func (s *Server) AuthorizationRequests() []AuthorizationRequestInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requestLog)
}

func (s *Server) infoLocked(sess *session) SessionInfo {
	return SessionInfo{
		ID:                 sess.id,
		DID:                sess.did,
		ClientID:           sess.clientID,
		Scope:              sess.scope,
		Confidential:       sess.confidential,
		ClientKeyID:        sess.clientAuth.kid,
		DPoPJKT:            sess.jkt,
		AccessToken:        sess.accessToken,
		AccessTokenExpires: sess.accessExpires,
		RefreshToken:       sess.refreshToken,
		Refreshes:          sess.refreshes,
		Created:            sess.created,
		Expires:            sess.expires,
		Active:             sess.endReason == "" && s.now().Before(sess.expires),
		EndReason:          sess.endReason,
	}
}

// Session finds the session that issued token (any access or refresh token
// this server ever issued, current or not).
func (s *Server) Session(token string) (SessionInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.tokens[token]
	if !ok {
		return SessionInfo{}, false
	}
	return s.infoLocked(s.sessions[id]), true
}

// Sessions lists the sessions of an account (handle or DID), active and
// ended, oldest first. With "" it lists every session.
func (s *Server) Sessions(account string) []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var did syntax.DID
	if account != "" {
		a := s.lookupAccountLocked(account)
		if a == nil {
			return nil
		}
		did = a.DID
	}
	var out []SessionInfo
	for _, id := range s.sessionList {
		sess := s.sessions[id]
		if did == "" || sess.did == did {
			out = append(out, s.infoLocked(sess))
		}
	}
	return out
}

// Revoked reports whether token was issued by this server and its session
// has ended (revoked, killed by a replay, or expired). A token that was
// merely rotated out by a refresh, in a live session, is not "revoked";
// use [Server.TokenActive] to ask whether a token would be accepted.
func (s *Server) Revoked(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.tokens[token]
	if !ok {
		return false
	}
	sess := s.sessions[id]
	return sess.endReason != "" || !s.now().Before(sess.expires)
}

// TokenActive reports whether token would be accepted right now: the current,
// unexpired access token of a live session (at the PDS), or the current
// refresh token of a live session (at the token endpoint).
func (s *Server) TokenActive(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if sess, ok := s.access[token]; ok {
		return sess.endReason == "" && now.Before(sess.accessExpires)
	}
	if rec, ok := s.refresh[token]; ok {
		sess := rec.sess
		return !rec.used && sess.endReason == "" && now.Before(sess.expires) && now.Before(sess.refreshExpires)
	}
	return false
}

// RevokeToken ends the session that token (a current access or refresh
// token) belongs to, as the revocation endpoint would; it reports whether a
// live session was ended. Use it to simulate a user revoking an app's access
// from elsewhere.
func (s *Server) RevokeToken(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.access[token]
	if sess == nil {
		if rec := s.refresh[token]; rec != nil && !rec.used {
			sess = rec.sess
		}
	}
	if sess == nil || sess.endReason != "" {
		return false
	}
	s.endSessionLocked(sess, "revoked")
	s.stats.SessionsRevoked++
	return true
}

// RevokeAll ends every live session of an account (handle or DID) and
// returns how many it ended.
func (s *Server) RevokeAll(account string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupAccountLocked(account)
	if a == nil {
		return 0
	}
	n := 0
	for _, sess := range s.sessions {
		if sess.did == a.DID && sess.endReason == "" {
			s.endSessionLocked(sess, "revoked")
			s.stats.SessionsRevoked++
			n++
		}
	}
	return n
}

// ExpireAccessTokens makes every access token issued so far expired. The
// PDS then answers them with 401 and WWW-Authenticate: DPoP
// error="invalid_token", which is what makes a client (indigo's
// ClientSession.DoWithAuth) refresh. Refresh tokens and sessions are not
// affected, and tokens issued afterwards get the normal lifetime.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, sess := range s.access {
		if sess.accessExpires.After(now) {
			sess.accessExpires = now
		}
	}
}
