package ginoauthtest

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// parRequest is a pushed authorization request, until it is used.
type parRequest struct {
	uri           string
	clientID      string
	clientName    string
	confidential  bool
	redirectURI   string
	state         string
	scope         string // requested, deduplicated, include: scopes not expanded
	codeChallenge string
	loginHint     string
	prompt        string
	jkt           string
	clientAuth    clientAuth // the client key of the PAR (confidential clients)
	expires       time.Time
	used          bool
}

type authCode struct {
	clientID      string
	redirectURI   string
	codeChallenge string
	jkt           string
	did           syntax.DID
	scope         string          // approved: requested minus DenyScopes, include: scopes not expanded
	denied        map[string]bool // DenyScopes at approval, applied to every expansion
	confidential  bool
	clientAuth    clientAuth
	expires       time.Time
}

// session is one OAuth session: the chain of tokens from one authorization.
type session struct {
	id             string
	did            syntax.DID
	clientID       string
	confidential   bool
	jkt            string
	clientAuth     clientAuth      // the client key the session is bound to (confidential clients)
	approvedScope  string          // what the user approved; include: scopes re-expanded at every grant
	denied         map[string]bool // scopes the user refused
	scope          string          // granted now: approvedScope expanded
	created        time.Time
	expires        time.Time
	accessToken    string
	accessExpires  time.Time
	refreshToken   string
	refreshExpires time.Time
	refreshes      int
	endReason      string // "" while the session lives
}

type refreshRT struct {
	sess *session
	used bool
}

type oauthError struct {
	status int
	code   string
	desc   string
}

func oerr(status int, code, format string, args ...any) *oauthError {
	return &oauthError{status: status, code: code, desc: fmt.Sprintf(format, args...)}
}

func invalidRequest(format string, args ...any) *oauthError {
	return oerr(http.StatusBadRequest, "invalid_request", format, args...)
}

func invalidGrant(format string, args ...any) *oauthError {
	return oerr(http.StatusBadRequest, "invalid_grant", format, args...)
}

func invalidClient(desc string) *oauthError {
	return oerr(http.StatusBadRequest, "invalid_client", "%s", desc)
}

func (s *Server) newMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-protected-resource", s.handleProtectedResource)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.handleASMetadata)
	mux.HandleFunc("GET /.well-known/did.json", s.handleDIDDocument)
	mux.HandleFunc("POST /oauth/par", s.asEndpoint(s.handlePAR))
	mux.HandleFunc("GET /oauth/authorize", s.handleAuthorizePage)
	mux.HandleFunc("POST /oauth/authorize", s.handleAuthorizeDecision)
	mux.HandleFunc("POST /oauth/token", s.asEndpoint(s.token))
	mux.HandleFunc("POST /oauth/revoke", s.asEndpoint(s.handleRevoke))
	mux.HandleFunc("/xrpc/{nsid}", s.handleXRPC)
	mux.HandleFunc("GET /{$}", s.handleIndex)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) handleProtectedResource(w http.ResponseWriter, r *http.Request) {
	resource := s.issuer
	s.mu.Lock()
	if host := strings.ToLower(strings.TrimSuffix(r.Host, ":443")); s.pdsHosts[host] {
		resource = "https://" + host
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"resource":                 resource,
		"authorization_servers":    []string{s.issuer},
		"scopes_supported":         []string{},
		"bearer_methods_supported": []string{"header"},
		"resource_documentation":   "https://atproto.com",
	})
}

// scopesSupported is what the metadata advertises; the server itself grants
// any scope the client declared.
var scopesSupported = []string{"atproto", "transition:generic", "transition:chat.bsky", "transition:email"}

func (s *Server) handleASMetadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                           s.issuer,
		"authorization_endpoint":                           s.issuer + "/oauth/authorize",
		"token_endpoint":                                   s.issuer + "/oauth/token",
		"pushed_authorization_request_endpoint":            s.issuer + "/oauth/par",
		"revocation_endpoint":                              s.issuer + "/oauth/revoke",
		"response_types_supported":                         []string{"code"},
		"response_modes_supported":                         []string{"query"},
		"grant_types_supported":                            []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"scopes_supported":                                 scopesSupported,
		"subject_types_supported":                          []string{"public"},
		"ui_locales_supported":                             []string{"en-US"},
		"display_values_supported":                         []string{"page"},
		"prompt_values_supported":                          promptValues,
		"token_endpoint_auth_methods_supported":            []string{"none", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"ES256"},
		"revocation_endpoint_auth_methods_supported":       []string{"none", "private_key_jwt"},
		"dpop_signing_alg_values_supported":                []string{"ES256"},
		"authorization_response_iss_parameter_supported":   true,
		"require_pushed_authorization_requests":            true,
		"request_parameter_supported":                      false,
		"request_uri_parameter_supported":                  true,
		"require_request_uri_registration":                 true,
		"client_id_metadata_document_supported":            true,
		"protected_resources":                              []string{s.issuer},
	})
}

// asEndpoint wraps the PAR, token and revocation endpoints: it parses the
// form body and verifies the DPoP proof (answering use_dpop_nonce with 400
// and a DPoP-Nonce header, like the reference server) before the handler
// runs, and sends the current nonce on every answer.
//
// The proof is checked before client authentication on purpose: clients
// resend the same body (and client assertion) after a use_dpop_nonce answer,
// so the assertion's jti must not be spent on the attempt without a nonce.
func (s *Server) asEndpoint(h func(w http.ResponseWriter, r *http.Request, form url.Values, proof *dpopProof) *oauthError) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		e := func() *oauthError {
			form, e := parseForm(w, r)
			if e != nil {
				return e
			}
			proof, perr := s.checkDPoP(r, "")
			if perr != nil {
				return oerr(http.StatusBadRequest, perr.code, "%s", perr.desc)
			}
			return h(w, r, form, proof)
		}()
		if e != nil {
			s.log.Info("oauth request rejected", "path", r.URL.Path, "error", e.code, "description", e.desc)
			if r.URL.Path == "/oauth/token" && e.code != "use_dpop_nonce" {
				s.mu.Lock()
				s.stats.TokenErrors++
				s.mu.Unlock()
			}
			s.setNonceHeader(w)
			writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.desc})
		}
	}
}

func (s *Server) setNonceHeader(w http.ResponseWriter) {
	s.mu.Lock()
	cur, _ := s.noncesLocked()
	s.mu.Unlock()
	w.Header().Set("DPoP-Nonce", cur)
}

// parseForm reads an application/x-www-form-urlencoded body (at most 64 KiB)
// and refuses repeated parameters (RFC 6749, section 3.1).
func parseForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, invalidRequest("Content-Type must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		return nil, invalidRequest("request body too large or unreadable")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, invalidRequest("malformed form body")
	}
	for k, v := range form {
		if len(v) > 1 {
			return nil, invalidRequest("parameter %s is included more than once", k)
		}
	}
	return form, nil
}

// promptValues are the prompt values the reference server accepts.
var promptValues = []string{"none", "login", "consent", "select_account", "create"}

var codeChallengeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
var codeVerifierRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

func (s *Server) handlePAR(w http.ResponseWriter, r *http.Request, form url.Values, proof *dpopProof) *oauthError {
	ci, err := s.resolveClient(r.Context(), form.Get("client_id"))
	if err != nil {
		return invalidClient(err.Error())
	}
	auth, e := s.authenticateClient(ci, form)
	if e != nil {
		return e
	}
	if form.Has("request") {
		return oerr(http.StatusBadRequest, "request_not_supported", "request objects are not supported")
	}
	if form.Has("request_uri") {
		return invalidRequest("request_uri is not allowed in a pushed authorization request")
	}
	if rt := form.Get("response_type"); rt != "code" {
		return oerr(http.StatusBadRequest, "unsupported_response_type", "response_type must be code")
	}
	if rm := form.Get("response_mode"); rm != "" && rm != "query" {
		return invalidRequest("response_mode %q is not supported (only query)", rm)
	}
	redirectURI := form.Get("redirect_uri")
	if redirectURI == "" {
		return invalidRequest("redirect_uri is required")
	}
	if !ci.redirectAllowed(redirectURI) {
		return invalidRequest("redirect_uri is not registered for this client")
	}
	state := form.Get("state")
	if state == "" {
		return invalidRequest("state is required")
	}
	if m := form.Get("code_challenge_method"); m != "S256" {
		return invalidRequest("code_challenge_method must be S256")
	}
	if !codeChallengeRE.MatchString(form.Get("code_challenge")) {
		return invalidRequest("code_challenge is required (base64url SHA-256, 43 characters)")
	}
	asSent := strings.Join(strings.Fields(form.Get("scope")), " ")
	// Duplicates are dropped, like the reference server does.
	var values []string
	for _, v := range strings.Fields(asSent) {
		if !slices.Contains(values, v) {
			values = append(values, v)
		}
	}
	scope := strings.Join(values, " ")
	if err := ci.checkScope(scope); err != nil {
		return oerr(http.StatusBadRequest, "invalid_scope", "%s", err.Error())
	}
	prompt := form.Get("prompt")
	if prompt != "" && !slices.Contains(promptValues, prompt) {
		return invalidRequest("unsupported prompt value %q (want one of %s)", prompt, strings.Join(promptValues, ", "))
	}
	if prompt == "none" && !ci.confidential {
		// The reference server refuses silent sign-in for clients that do
		// not authenticate.
		return oerr(http.StatusBadRequest, "consent_required", "Public clients are not allowed to use silent-sign-on")
	}
	if jkt := form.Get("dpop_jkt"); jkt != "" && jkt != proof.jkt {
		return invalidRequest("dpop_jkt does not match the DPoP proof key")
	}

	req := &parRequest{
		uri:           "urn:ietf:params:oauth:request_uri:req-" + randomToken()[:32],
		clientID:      ci.id,
		clientName:    ci.name,
		confidential:  ci.confidential,
		redirectURI:   redirectURI,
		state:         state,
		scope:         scope,
		codeChallenge: form.Get("code_challenge"),
		loginHint:     form.Get("login_hint"),
		prompt:        prompt,
		jkt:           proof.jkt,
		clientAuth:    auth,
	}
	s.mu.Lock()
	// Like the reference, which resolves the permission sets of the
	// request before accepting it.
	if nsid := s.unknownIncludeLocked(scope); nsid != "" {
		s.mu.Unlock()
		return oerr(http.StatusBadRequest, "invalid_scope", "Could not resolve the permission set %s (publish it with PublishPermissionSet)", nsid)
	}
	now := s.now()
	req.expires = now.Add(RequestLifetime)
	s.requests[req.uri] = req
	s.requestLog = append(s.requestLog, AuthorizationRequestInfo{
		ClientID:    ci.id,
		RedirectURI: redirectURI,
		Scope:       asSent,
		Prompt:      prompt,
		LoginHint:   req.loginHint,
		Created:     now,
	})
	s.stats.PARs++
	s.mu.Unlock()
	s.log.Info("pushed authorization request accepted", "client_id", ci.id, "request", shortID(req.uri), "confidential", ci.confidential)

	s.setNonceHeader(w)
	writeJSON(w, http.StatusCreated, map[string]any{
		"request_uri": req.uri,
		"expires_in":  int(RequestLifetime / time.Second),
	})
	return nil
}

func (s *Server) token(w http.ResponseWriter, r *http.Request, form url.Values, proof *dpopProof) *oauthError {
	ci, err := s.resolveClient(r.Context(), form.Get("client_id"))
	if err != nil {
		return invalidClient(err.Error())
	}
	auth, e := s.authenticateClient(ci, form)
	if e != nil {
		return e
	}
	var sess *session
	switch gt := form.Get("grant_type"); gt {
	case "authorization_code":
		sess, e = s.codeGrant(ci, auth, form, proof)
	case "refresh_token":
		if !slices.Contains(ci.grantTypes, "refresh_token") {
			return oerr(http.StatusBadRequest, "unauthorized_client", "the client did not declare the refresh_token grant type")
		}
		sess, e = s.refreshGrant(ci, auth, form, proof)
	default:
		return oerr(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
	}
	if e != nil {
		return e
	}
	s.mu.Lock()
	resp := map[string]any{
		"access_token":  sess.accessToken,
		"token_type":    "DPoP",
		"expires_in":    max(0, int((sess.accessExpires.Sub(s.now())+time.Second/2)/time.Second)),
		"refresh_token": sess.refreshToken,
		"scope":         sess.scope,
		"sub":           sess.did.String(),
	}
	s.mu.Unlock()
	s.setNonceHeader(w)
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) codeGrant(ci *clientInfo, auth clientAuth, form url.Values, proof *dpopProof) (*session, *oauthError) {
	code := form.Get("code")
	if code == "" {
		return nil, invalidRequest("code is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[code]
	if !ok {
		if sid, used := s.usedCodes[code]; used {
			// RFC 6749, section 4.1.2: a code used twice revokes what it
			// produced.
			if sess := s.sessions[sid]; sess != nil && sess.endReason == "" {
				s.endSessionLocked(sess, "authorization code replayed")
			}
			s.stats.CodeReplays++
			s.log.Warn("authorization code replayed; session ended", "session", sid)
			return nil, invalidGrant("Code replayed")
		}
		return nil, invalidGrant("Invalid code")
	}
	// Single use, whatever happens next.
	delete(s.codes, code)
	s.usedCodes[code] = ""
	now := s.now()
	if !now.Before(c.expires) {
		return nil, invalidGrant("Code expired")
	}
	if c.clientID != ci.id {
		return nil, invalidGrant("Code was issued to another client")
	}
	if form.Get("redirect_uri") != c.redirectURI {
		return nil, invalidGrant("redirect_uri does not match the authorization request")
	}
	verifier := form.Get("code_verifier")
	if !codeVerifierRE.MatchString(verifier) {
		return nil, invalidGrant("code_verifier is missing or malformed")
	}
	if subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(c.codeChallenge)) != 1 {
		return nil, invalidGrant("Invalid code_verifier")
	}
	if proof.jkt != c.jkt {
		return nil, invalidGrant("DPoP key does not match the key of the authorization request")
	}
	if !auth.sameKey(c.clientAuth) {
		s.keyMismatchLocked()
		return nil, invalidGrant("%s", errKeyMismatch)
	}

	sess := &session{
		id:            randomToken()[:16],
		did:           c.did,
		clientID:      c.clientID,
		confidential:  c.confidential,
		jkt:           c.jkt,
		clientAuth:    c.clientAuth,
		approvedScope: c.scope,
		denied:        c.denied,
		scope:         s.expandScopeLocked(c.scope, c.denied),
		created:       now,
	}
	if c.confidential {
		sess.expires = now.Add(s.confidentialLifetime)
	} else {
		sess.expires = now.Add(s.publicLifetime)
	}
	s.sessions[sess.id] = sess
	s.sessionList = append(s.sessionList, sess.id)
	s.usedCodes[code] = sess.id
	s.issueTokensLocked(sess, now)
	s.stats.CodeGrants++
	s.log.Info("session created", "session", sess.id, "did", sess.did, "client_id", sess.clientID, "confidential", sess.confidential)
	return sess, nil
}

func (s *Server) issueTokensLocked(sess *session, now time.Time) {
	if sess.accessToken != "" {
		delete(s.access, sess.accessToken)
	}
	sess.accessToken = randomToken()
	sess.accessExpires = minTime(now.Add(s.accessLifetime), sess.expires)
	sess.refreshToken = randomToken()
	if sess.confidential {
		sess.refreshExpires = minTime(now.Add(s.confidentialRTLife), sess.expires)
	} else {
		sess.refreshExpires = sess.expires
	}
	s.access[sess.accessToken] = sess
	s.refresh[sess.refreshToken] = &refreshRT{sess: sess}
	s.tokens[sess.accessToken] = sess.id
	s.tokens[sess.refreshToken] = sess.id
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (s *Server) refreshGrant(ci *clientInfo, auth clientAuth, form url.Values, proof *dpopProof) (*session, *oauthError) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, invalidRequest("refresh_token is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.refresh[rt]
	if !ok {
		return nil, invalidGrant("Invalid refresh token")
	}
	sess := rec.sess
	if sess.endReason != "" {
		return nil, invalidGrant("Refresh token revoked (session ended: %s)", sess.endReason)
	}
	if sess.clientID != ci.id {
		return nil, invalidGrant("Refresh token was issued to another client")
	}
	if proof.jkt != sess.jkt {
		return nil, invalidGrant("DPoP key does not match the session's key")
	}
	if !auth.sameKey(sess.clientAuth) {
		s.keyMismatchLocked()
		return nil, invalidGrant("%s", errKeyMismatch)
	}
	if sess.clientAuth.kid == "" {
		sess.clientAuth = auth // a public client's session, now authenticated: bound from here on
	}
	if rec.used {
		s.endSessionLocked(sess, "refresh token replayed")
		s.stats.ReplaysDetected++
		s.log.Warn("refresh token replayed; session ended", "session", sess.id, "did", sess.did)
		return nil, invalidGrant("Refresh token replayed")
	}
	now := s.now()
	if !now.Before(sess.expires) {
		s.endSessionLocked(sess, "session expired")
		return nil, invalidGrant("Session expired")
	}
	if !now.Before(sess.refreshExpires) {
		s.endSessionLocked(sess, "refresh token expired")
		return nil, invalidGrant("Refresh token expired")
	}
	if a := s.accounts[sess.did]; a != nil && (a.status == statusTakendown || a.status == statusDeleted) {
		// The reference server deletes the account's tokens with it.
		return nil, invalidGrant("Account %s", a.status)
	}
	rec.used = true
	// Permission sets are resolved again at every refresh, like the
	// reference server does: a set published since with fewer
	// permissions grants less from now on.
	sess.scope = s.expandScopeLocked(sess.approvedScope, sess.denied)
	s.issueTokensLocked(sess, now)
	sess.refreshes++
	s.stats.RefreshGrants++
	s.log.Info("tokens refreshed", "session", sess.id, "did", sess.did, "refreshes", sess.refreshes)
	return sess, nil
}

// endSessionLocked ends a session for good: its current access and refresh
// tokens stop working.
func (s *Server) endSessionLocked(sess *session, reason string) {
	if sess.endReason != "" {
		return
	}
	sess.endReason = reason
	delete(s.access, sess.accessToken)
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, form url.Values, proof *dpopProof) *oauthError {
	ci, err := s.resolveClient(r.Context(), form.Get("client_id"))
	if err != nil {
		return invalidClient(err.Error())
	}
	auth, e := s.authenticateClient(ci, form)
	if e != nil {
		return e
	}
	tok := form.Get("token")
	if tok == "" {
		return invalidRequest("token is required")
	}
	s.mu.Lock()
	sess := s.access[tok]
	if sess == nil {
		if rec := s.refresh[tok]; rec != nil && !rec.used {
			sess = rec.sess
		}
	}
	if sess != nil && sess.endReason == "" {
		if sess.clientID != ci.id {
			s.mu.Unlock()
			return invalidRequest("the token was issued to another client")
		}
		if sess.jkt != proof.jkt {
			s.mu.Unlock()
			return invalidRequest("DPoP key does not match the token's key")
		}
		if !auth.sameKey(sess.clientAuth) {
			s.keyMismatchLocked()
			s.mu.Unlock()
			return invalidRequest("%s", errKeyMismatch)
		}
		s.endSessionLocked(sess, "revoked")
		s.stats.SessionsRevoked++
		s.log.Info("session revoked", "session", sess.id, "did", sess.did)
	}
	s.stats.Revocations++
	s.mu.Unlock()
	// RFC 7009: 200 whether or not the token was known.
	s.setNonceHeader(w)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}
