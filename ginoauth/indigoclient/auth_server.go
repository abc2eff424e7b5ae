package indigoclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// This file sends the requests to the authorization server that indigo's
// helpers cannot be told enough about: the pushed authorization request
// (indigo's SendAuthRequest has no prompt parameter), the refresh grant
// (indigo's RefreshTokens drops the scope the server granted, which a
// permission set re-resolved at refresh can narrow), the code exchange and
// revocation, each with a client assertion signed by the key its login or
// session is bound to (indigo signs with its one configured key). DPoP
// proofs, the assertions themselves (indigo's NewClientAssertion, see
// Client.clientAssertion) and metadata resolution are indigo's.

// maxAuthServerAnswer bounds how much of an authorization server's answer
// is read.
const maxAuthServerAnswer = 1 << 20

// tokenError is an OAuth error answer (RFC 6749 section 5.2) of the
// authorization server.
type tokenError struct {
	Status      int
	Code        string // "invalid_grant", "invalid_scope", ...
	Description string
}

func (e *tokenError) Error() string {
	msg := fmt.Sprintf("authorization server answered HTTP %d", e.Status)
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}

// postForm sends a form to an endpoint of the authorization server with a
// DPoP proof, answering one use_dpop_nonce challenge, and decodes a 2xx
// JSON answer into out. nonce is the server nonce to start with; the newest
// one is returned. A confidential client authenticates with a client
// assertion signed with clientKey, the key the login or session is bound to
// (nil for a public client).
func (c *Client) postForm(ctx context.Context, endpoint, issuer, nonce string, key atcrypto.PrivateKey, clientKey *ClientKey, form url.Values, out any) (string, error) {
	if c.keys != nil {
		if clientKey == nil {
			return nonce, errors.New("indigoclient: a confidential client's request has no client key to sign with")
		}
		assertion, err := c.clientAssertion(clientKey, issuer)
		if err != nil {
			return nonce, err
		}
		form.Set("client_assertion_type", oauth.ClientAssertionJWTBearer)
		form.Set("client_assertion", assertion)
	}
	body := []byte(form.Encode())
	for attempt := 0; ; attempt++ {
		proof, err := oauth.NewAuthDPoP(http.MethodPost, endpoint, nonce, key)
		if err != nil {
			return nonce, err
		}
		// endpoint is from the authorization server's metadata; the client's
		// HTTP client (the SSRF-guarded one by default) decides where it may go.
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body)) //nolint:gosec // G704: see above
		if err != nil {
			return nonce, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("DPoP", proof)
		resp, err := c.app.Client.Do(req) //nolint:gosec // the endpoint comes from validated server metadata; the default client refuses private addresses
		if err != nil {
			return nonce, err
		}
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAuthServerAnswer))
		_ = resp.Body.Close()
		if err != nil {
			return nonce, err
		}
		if n := resp.Header.Get("DPoP-Nonce"); n != "" {
			nonce = n
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			if len(bytes.TrimSpace(raw)) == 0 {
				return nonce, nil // revocation answers 200 with no body
			}
			if err := json.Unmarshal(raw, out); err != nil {
				return nonce, fmt.Errorf("indigoclient: unreadable answer from %s: %w", endpoint, err)
			}
			return nonce, nil
		}
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(raw, &e)
		if e.Error == "use_dpop_nonce" && attempt == 0 && resp.Header.Get("DPoP-Nonce") != "" {
			continue // the normal first round with a server that requires nonces
		}
		return nonce, &tokenError{Status: resp.StatusCode, Code: e.Error, Description: e.Description}
	}
}

// pushedRequest is what sendPAR needs besides the server's metadata.
type pushedRequest struct {
	state     string
	scopes    []string
	loginHint string
	prompt    string
	key       *ClientKey // the client key the login is bound to (confidential clients)
}

// sendPAR sends the pushed authorization request, with PKCE S256 and a new
// DPoP key, and returns what the callback will need.
func (c *Client) sendPAR(ctx context.Context, meta *oauth.AuthServerMetadata, pr pushedRequest) (*oauth.AuthRequestData, error) {
	state := pr.state
	verifier := randomString(48)
	key, err := atcrypto.GeneratePrivateKeyP256()
	if err != nil {
		return nil, err
	}
	form := url.Values{
		"client_id":             {c.app.Config.ClientID},
		"response_type":         {"code"},
		"redirect_uri":          {c.app.Config.CallbackURL},
		"state":                 {state},
		"scope":                 {strings.Join(pr.scopes, " ")},
		"code_challenge":        {oauth.S256CodeChallenge(verifier)},
		"code_challenge_method": {"S256"},
	}
	if pr.loginHint != "" {
		form.Set("login_hint", pr.loginHint)
	}
	if pr.prompt != "" {
		form.Set("prompt", pr.prompt)
	}
	var answer oauth.PushedAuthResponse
	nonce, err := c.postForm(ctx, meta.PushedAuthorizationRequestEndpoint, meta.Issuer, "", key, pr.key, form, &answer)
	if err != nil {
		return nil, err
	}
	if answer.RequestURI == "" {
		return nil, errors.New("indigoclient: pushed authorization request answered without a request_uri")
	}
	return &oauth.AuthRequestData{
		State:                        state,
		AuthServerURL:                meta.Issuer,
		Scopes:                       pr.scopes,
		PKCEVerifier:                 verifier,
		RequestURI:                   answer.RequestURI,
		AuthServerTokenEndpoint:      meta.TokenEndpoint,
		AuthServerRevocationEndpoint: meta.RevocationEndpoint,
		DPoPAuthServerNonce:          nonce,
		DPoPPrivateKeyMultibase:      key.Multibase(),
	}, nil
}

// refreshGrant spends cs's refresh token and puts the new tokens, and the
// scope the server granted with them, into cs.Data. cs must not be shared
// yet (the caller holds the refresh lock and a fresh copy). clientKey is
// the key the session is bound to (nil for a public client).
func (c *Client) refreshGrant(ctx context.Context, cs *oauth.ClientSession, clientKey *ClientKey) error {
	d := cs.Data
	form := url.Values{
		"client_id":     {c.app.Config.ClientID},
		"grant_type":    {"refresh_token"},
		"refresh_token": {d.RefreshToken},
	}
	var answer oauth.TokenResponse
	nonce, err := c.postForm(ctx, d.AuthServerTokenEndpoint, d.AuthServerURL, d.DPoPAuthServerNonce, cs.DPoPPrivateKey, clientKey, form, &answer)
	d.DPoPAuthServerNonce = nonce
	c.store.nonces.remember(d)
	if err != nil {
		return err
	}
	switch {
	case answer.AccessToken == "" || answer.RefreshToken == "":
		return errors.New("indigoclient: refresh answered without tokens")
	case answer.Subject != "" && answer.Subject != d.AccountDID.String():
		return fmt.Errorf("indigoclient: refresh answered for another account (%s)", answer.Subject)
	}
	d.AccessToken, d.RefreshToken = answer.AccessToken, answer.RefreshToken
	if s := strings.Fields(answer.Scope); len(s) > 0 {
		d.Scopes = s
	}
	return nil
}

// isTerminalRefreshError reports whether the server refused the refresh
// token itself (revoked, expired, replayed): the login is over.
func isTerminalRefreshError(err error) bool {
	var te *tokenError
	return errors.As(err, &te) && te.Code == "invalid_grant"
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// exchangeCode completes an authorization at the callback: it consumes the
// pending request for state, checks error and then iss (RFC 9207), spends
// the code with the PKCE verifier under the request's DPoP key, checks the
// token's sub (the account the login started with, or, for a login started
// at a server, an account whose PDS names that same authorization server),
// and returns the new session's data and the client key it is bound to:
// the one the PAR was signed with (nil for a public client). Tokens
// obtained for the wrong account are revoked at once: nobody may hold them.
func (c *Client) exchangeCode(ctx context.Context, params url.Values) (*oauth.ClientSessionData, *ClientKey, error) {
	state := params.Get("state")
	req, err := c.store.takeAuthRequest(ctx, state)
	if err != nil {
		return nil, nil, err // ErrNotFound: unknown, expired or already used
	}
	info := &req.AuthRequestData
	if code := params.Get("error"); code != "" {
		return nil, nil, &oauth.AuthRequestCallbackError{ErrorCode: code, ErrorDescription: params.Get("error_description")}
	}
	iss, code := params.Get("iss"), params.Get("code")
	switch {
	case iss == "" || code == "":
		return nil, nil, errors.New("indigoclient: callback without iss or code")
	case iss != info.AuthServerURL:
		return nil, nil, fmt.Errorf("indigoclient: callback iss %q is not the authorization server of the login", iss)
	}
	var clientKey *ClientKey
	if c.keys != nil {
		// The server binds the session to the key of the PAR and refuses
		// any other; a key retired meanwhile signs no new session.
		if clientKey, err = c.keyFor(req.ClientKeyID, false); err != nil {
			return nil, nil, err
		}
	}
	key, err := atcrypto.ParsePrivateMultibase(info.DPoPPrivateKeyMultibase)
	if err != nil {
		return nil, nil, err
	}
	form := url.Values{
		"client_id":     {c.app.Config.ClientID},
		"redirect_uri":  {c.app.Config.CallbackURL},
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"code_verifier": {info.PKCEVerifier},
	}
	var tok oauth.TokenResponse
	nonce, err := c.postForm(ctx, info.AuthServerTokenEndpoint, info.AuthServerURL, info.DPoPAuthServerNonce, key, clientKey, form, &tok)
	if err != nil {
		return nil, nil, err
	}
	did, host, err := c.verifySubject(ctx, info, tok.Subject)
	if err != nil {
		// Best effort: the login fails either way; revoking keeps the
		// wrong account's tokens from outliving it.
		_ = c.revokeTokens(context.WithoutCancel(ctx), info.AuthServerRevocationEndpoint, info.AuthServerURL, nonce, key, clientKey, tok.AccessToken, tok.RefreshToken)
		return nil, nil, err
	}
	data := &oauth.ClientSessionData{
		AccountDID:                   did,
		SessionID:                    info.State,
		HostURL:                      host,
		AuthServerURL:                info.AuthServerURL,
		AuthServerTokenEndpoint:      info.AuthServerTokenEndpoint,
		AuthServerRevocationEndpoint: info.AuthServerRevocationEndpoint,
		Scopes:                       strings.Fields(tok.Scope),
		AccessToken:                  tok.AccessToken,
		RefreshToken:                 tok.RefreshToken,
		DPoPAuthServerNonce:          nonce,
		DPoPPrivateKeyMultibase:      info.DPoPPrivateKeyMultibase,
	}
	if host == info.AuthServerURL {
		data.DPoPHostNonce = nonce // one server in both roles, one nonce
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		return nil, nil, errors.New("indigoclient: token answer without tokens")
	}
	return data, clientKey, nil
}

// errWrongAccount is a login approved for another account than the one it
// started with.
var errWrongAccount = errors.New("indigoclient: the token was issued for another account than the login started with")

// verifySubject checks the token's sub and returns the account and its PDS.
func (c *Client) verifySubject(ctx context.Context, info *oauth.AuthRequestData, sub string) (syntax.DID, string, error) {
	did, err := syntax.ParseDID(sub)
	if err != nil {
		return "", "", fmt.Errorf("indigoclient: token sub %q is not a DID", sub)
	}
	if info.AccountDID != nil && did != *info.AccountDID {
		return "", "", errWrongAccount
	}
	ident, err := c.app.Dir.LookupDID(ctx, did)
	if err != nil {
		return "", "", err
	}
	host := ident.PDSEndpoint()
	if host == "" {
		return "", "", errors.New("indigoclient: the account has no PDS")
	}
	if info.AccountDID == nil {
		// Started at a server: the account's own PDS must name the server
		// that issued the token.
		as, err := c.app.Resolver.ResolveAuthServerURL(ctx, host)
		if err != nil {
			return "", "", err
		}
		if as != info.AuthServerURL {
			return "", "", errWrongAccount
		}
	}
	return did, host, nil
}

// revokeTokens revokes each token at the authorization server (RFC 7009),
// returning the first failure.
func (c *Client) revokeTokens(ctx context.Context, endpoint, issuer, nonce string, key atcrypto.PrivateKey, clientKey *ClientKey, tokens ...string) error {
	if endpoint == "" {
		return errors.New("indigoclient: the authorization server has no revocation endpoint")
	}
	var first error
	for _, t := range tokens {
		if t == "" {
			continue
		}
		form := url.Values{"client_id": {c.app.Config.ClientID}, "token": {t}}
		var ignored json.RawMessage
		n, err := c.postForm(ctx, endpoint, issuer, nonce, key, clientKey, form, &ignored)
		nonce = n
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// revokeSession revokes a session's access and refresh tokens, signing the
// client assertion with clientKey, the key the session is bound to.
func (c *Client) revokeSession(ctx context.Context, cs *oauth.ClientSession, clientKey *ClientKey) error {
	d := cs.Data
	return c.revokeTokens(ctx, d.AuthServerRevocationEndpoint, d.AuthServerURL, d.DPoPAuthServerNonce, cs.DPoPPrivateKey, clientKey, d.AccessToken, d.RefreshToken)
}
