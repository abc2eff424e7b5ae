package refpds

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
)

// Probe is the server's answer to one use of a token, without the token or
// any new token in it.
type Probe struct {
	// Status is the HTTP status of the final answer (after at most one DPoP
	// nonce round).
	Status int
	// Error is the OAuth or XRPC error code ("invalid_token",
	// "invalid_grant", "InvalidToken", ...), "" on success.
	Error string
	// Description is error_description or message.
	Description string
	// WWWAuthenticate is the WWW-Authenticate header, if any.
	WWWAuthenticate string
}

// OK reports a 200 answer.
func (p *Probe) OK() bool { return p.Status == http.StatusOK }

func (p *Probe) String() string {
	if p.OK() {
		return "HTTP 200"
	}
	return fmt.Sprintf("HTTP %d %s: %s", p.Status, p.Error, p.Description)
}

// ProbeAccessToken calls com.atproto.server.getSession on the PDS with the
// access token in data (a snapshot of a session, e.g. the
// oauth.ClientSessionData returned by ProcessCallback), with a DPoP proof
// from data's key. Unlike indigo's ClientSession it never refreshes: a
// revoked or expired token shows as 401 invalid_token. data is not changed.
func (e *Env) ProbeAccessToken(ctx context.Context, data oauth.ClientSessionData) (*Probe, error) {
	priv, err := atcrypto.ParsePrivateMultibase(data.DPoPPrivateKeyMultibase)
	if err != nil {
		return nil, fmt.Errorf("refpds: DPoP key: %w", err)
	}
	snap := data
	sess := &oauth.ClientSession{Data: &snap, DPoPPrivateKey: priv}
	host := strings.TrimRight(data.HostURL, "/")
	if host == "" {
		host = e.Issuer
	}
	target := host + "/xrpc/com.atproto.server.getSession"
	client := e.HTTPClient()
	var probe *Probe
	for range 2 {
		proof, err := sess.NewHostDPoP(http.MethodGet, target)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "DPoP "+snap.AccessToken)
		req.Header.Set("DPoP", proof)
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("refpds: getSession: %w", err)
		}
		probe = readProbe(resp)
		nonce := resp.Header.Get("DPoP-Nonce")
		if probe.Status == http.StatusUnauthorized && strings.Contains(probe.WWWAuthenticate, `error="use_dpop_nonce"`) &&
			nonce != "" && nonce != snap.DPoPHostNonce {
			snap.DPoPHostNonce = nonce
			continue
		}
		break
	}
	return probe, nil
}

// ProbeRefreshToken presents the refresh token in data to the
// authorization server's token endpoint (grant_type=refresh_token, DPoP
// with data's key, a client assertion when config is confidential), as
// indigo's RefreshTokens does, and reports the answer without its tokens.
//
// Careful: on success (200) the server has rotated the token: the one in
// data is spent, and presenting it again is a replay that makes the server
// delete the whole session. Use it to check that a token is dead (after a
// logout, a revocation or a replay), where the expected answer is 400
// invalid_grant. data is not changed.
func (e *Env) ProbeRefreshToken(ctx context.Context, config *oauth.ClientConfig, data oauth.ClientSessionData) (*Probe, error) {
	priv, err := atcrypto.ParsePrivateMultibase(data.DPoPPrivateKeyMultibase)
	if err != nil {
		return nil, fmt.Errorf("refpds: DPoP key: %w", err)
	}
	endpoint := data.AuthServerTokenEndpoint
	if endpoint == "" {
		endpoint = e.Issuer + "/oauth/token"
	}
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {data.RefreshToken},
		"client_id":     {config.ClientID},
	}
	authServer := data.AuthServerURL
	if authServer == "" {
		authServer = e.Issuer
	}
	nonce := data.DPoPAuthServerNonce
	client := e.HTTPClient()
	var probe *Probe
	for range 2 {
		if config.IsConfidential() {
			assertion, err := config.NewClientAssertion(authServer)
			if err != nil {
				return nil, err
			}
			form.Set("client_assertion_type", oauth.ClientAssertionJWTBearer)
			form.Set("client_assertion", assertion)
		}
		proof, err := oauth.NewAuthDPoP(http.MethodPost, endpoint, nonce, priv)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("DPoP", proof)
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("refpds: token endpoint: %w", err)
		}
		probe = readProbe(resp)
		newNonce := resp.Header.Get("DPoP-Nonce")
		if probe.Status == http.StatusBadRequest && probe.Error == "use_dpop_nonce" && newNonce != "" && newNonce != nonce {
			nonce = newNonce
			continue
		}
		break
	}
	return probe, nil
}

// readProbe reads the error fields of an answer and closes its body. A
// success body (which may hold tokens) is discarded unread.
func readProbe(resp *http.Response) *Probe {
	defer resp.Body.Close()
	p := &Probe{Status: resp.StatusCode, WWWAuthenticate: resp.Header.Get("WWW-Authenticate")}
	if resp.StatusCode == http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return p
	}
	var body struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
		Message          string `json:"message"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &body) == nil {
		p.Error = body.Error
		p.Description = body.ErrorDescription
		if p.Description == "" {
			p.Description = body.Message
		}
	}
	return p
}
