package refpds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// AccountPage is a user signed in to the reference PDS's account page
// (/account), where "connected apps" are listed and revoked: the JSON API
// the page calls (~api/sign-in, ~api/oauth-sessions,
// ~api/revoke-oauth-session), called as the page does.
type AccountPage struct {
	b    *Browser
	page *url.URL
	DID  string
}

// OAuthSession is one grant (an app's OAuth session) as the account page
// lists it. TokenID is the server's id of the grant, not a token.
type OAuthSession struct {
	TokenID   string `json:"tokenId"`
	ClientID  string `json:"clientId"`
	CreatedAt string `json:"createdAt"`
	UpdatedAt string `json:"updatedAt"`
	Active    bool   `json:"active"`
	Scope     string `json:"scope"`
}

// SignInToAccountPage opens the account page and signs in with
// remember=true, as a user does before managing their connected apps.
func (e *Env) SignInToAccountPage(ctx context.Context, handle, password string) (*AccountPage, error) {
	b := e.NewBrowser()
	page, _ := url.Parse(e.Issuer + "/account")
	resp, err := b.navigate(ctx, page.String(), "none", "")
	if err != nil {
		return nil, fmt.Errorf("refpds: GET /account: %w", err)
	}
	if resp.status != http.StatusOK {
		return nil, resp.serverError("account page")
	}
	var signIn struct {
		Account struct {
			DID string `json:"did"`
		} `json:"account"`
	}
	if err := b.api(ctx, page, "sign-in", "", map[string]any{
		"locale": "en", "username": handle, "password": password, "remember": true,
	}, &signIn); err != nil {
		return nil, err
	}
	if signIn.Account.DID == "" {
		return nil, errors.New("refpds: sign-in answer lacks account.did")
	}
	return &AccountPage{b: b, page: page, DID: signIn.Account.DID}, nil
}

// OAuthSessions lists the account's grants (~api/oauth-sessions).
func (p *AccountPage) OAuthSessions(ctx context.Context) ([]OAuthSession, error) {
	var out []OAuthSession
	err := p.call(ctx, http.MethodGet, "oauth-sessions?"+url.Values{"did": {p.DID}}.Encode(), nil, &out)
	return out, err
}

// RevokeOAuthSession revokes one grant (~api/revoke-oauth-session), as
// the page's "revoke" button does.
func (p *AccountPage) RevokeOAuthSession(ctx context.Context, tokenID string) error {
	var out struct {
		Success bool `json:"success"`
	}
	if err := p.call(ctx, http.MethodPost, "revoke-oauth-session", map[string]any{"did": p.DID, "tokenId": tokenID}, &out); err != nil {
		return err
	}
	if !out.Success {
		return errors.New("refpds: revoke-oauth-session did not answer success")
	}
	return nil
}

// call is a same-origin fetch() from the account page to its JSON API.
func (p *AccountPage) call(ctx context.Context, method, endpoint string, in, out any) error {
	var body *bytes.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	} else {
		body = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.b.env.Issuer+apiPrefix+"/"+endpoint, body)
	if err != nil {
		return err
	}
	csrf := ""
	for _, c := range p.b.client.Jar.Cookies(p.page) {
		if c.Name == "csrf-token" {
			csrf = c.Value
		}
	}
	if csrf == "" {
		return fmt.Errorf("refpds: %s: the account page set no csrf-token cookie", endpoint)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Origin", p.b.env.Issuer)
	req.Header.Set("Referer", p.page.String())
	req.Header.Set("Sec-Fetch-Mode", "same-origin")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Dest", "empty")
	req.Header.Set("X-CSRF-Token", csrf)
	resp, err := p.b.do(req)
	if err != nil {
		return fmt.Errorf("refpds: %s %s: %w", method, endpoint, err)
	}
	if resp.status != http.StatusOK {
		return resp.serverError(endpoint)
	}
	if err := json.Unmarshal([]byte(resp.body), out); err != nil {
		return fmt.Errorf("refpds: %s: answer is not JSON: %w", endpoint, err)
	}
	return nil
}
