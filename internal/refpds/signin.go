package refpds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// apiPrefix is where the reference login page's JSON API lives
// (API_ENDPOINT_PREFIX in @atproto/oauth-provider-api).
const apiPrefix = "/@atproto/oauth-provider/~api"

// userAgent is what the emulated browser sends.
const userAgent = "Mozilla/5.0 (X11; Linux x86_64) ginoauth-refpds"

// SignInAndConsent does, without a browser, what a user does on the
// reference server's login page: it opens authorizeURL (the URL that
// indigo's StartAuthFlow returns, https://pds.test/oauth/authorize?...),
// signs in with handle and password, approves the client's request, and
// returns where the browser would be sent next: the client's redirect URI
// with state, iss and code. The caller delivers it to its callback (through
// its app, or to oauth.ClientApp.ProcessCallback).
//
// Steps (the reference page's own JSON API): GET authorizeURL with a
// browser's navigate headers (sets csrf-token, dev-id and ses-id cookies);
// POST ~api/sign-in {locale, username, password, remember:false}; POST
// ~api/consent {did} with the sign-in's ephemeral token; GET the returned
// https://pds.test/oauth/authorize/redirect URL, whose 303 Location is the
// result.
//
// If the server redirects to the client before or instead of a sign-in (for
// example error=access_denied for an authorize URL that was already used),
// that redirect is returned with a nil error, as a browser would follow it.
// A failed sign-in (wrong password) or an error page (for example "Unknown
// request_uri" for an authorize URL whose code was already exchanged) is a
// *[ServerError].
func (e *Env) SignInAndConsent(ctx context.Context, authorizeURL, handle, password string) (redirectTo string, err error) {
	return e.NewBrowser().SignInAndConsent(ctx, authorizeURL, handle, password)
}

// SignInAndReject is [Env.SignInAndConsent] with the user pressing "Deny"
// instead: the result is the client's redirect URI with
// error=access_denied. The reference page does not need a sign-in to
// reject, so handle and password may be empty; when given, the user signs in
// first.
func (e *Env) SignInAndReject(ctx context.Context, authorizeURL, handle, password string) (redirectTo string, err error) {
	return e.NewBrowser().SignInAndReject(ctx, authorizeURL, handle, password)
}

// Browser is one user agent: it keeps its cookies (the server's device and
// session cookies, csrf-token) across calls, and never follows redirects.
// The reference server binds an authorization request to the device that
// first opened it: opening the same authorize URL in another Browser ends in
// access_denied ("This request was initiated from another device"). Use one
// Browser to retry after a wrong password; [Env.SignInAndConsent] uses a
// new Browser each call. A Browser is not safe for concurrent use.
type Browser struct {
	env    *Env
	client *http.Client
}

// NewBrowser returns a user agent with an empty cookie jar.
func (e *Env) NewBrowser() *Browser {
	jar, _ := cookiejar.New(nil) // never fails without options
	return &Browser{
		env: e,
		client: &http.Client{
			Transport: e.Transport(),
			Jar:       jar,
			Timeout:   30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

// SignInAndConsent is [Env.SignInAndConsent] in this browser.
func (b *Browser) SignInAndConsent(ctx context.Context, authorizeURL, handle, password string) (redirectTo string, err error) {
	return b.authorizeFlow(ctx, authorizeURL, handle, password, true)
}

// SignInAndReject is [Env.SignInAndReject] in this browser.
func (b *Browser) SignInAndReject(ctx context.Context, authorizeURL, handle, password string) (redirectTo string, err error) {
	return b.authorizeFlow(ctx, authorizeURL, handle, password, false)
}

func (b *Browser) authorizeFlow(ctx context.Context, authorizeURL, handle, password string, consent bool) (string, error) {
	e := b.env
	au, err := url.Parse(authorizeURL)
	if err != nil {
		return "", fmt.Errorf("refpds: authorize URL: %w", err)
	}
	if au.Scheme != "https" || au.Host != e.Hostname || au.Path != "/oauth/authorize" {
		return "", fmt.Errorf("refpds: authorize URL %s://%s%s is not %s/oauth/authorize", au.Scheme, au.Host, au.Path, e.Issuer)
	}

	// 1. The login page.
	resp, err := b.navigate(ctx, au.String(), "cross-site", "")
	if err != nil {
		return "", fmt.Errorf("refpds: GET authorize page: %w", err)
	}
	if loc, ok := redirectLocation(resp); ok {
		return loc, nil
	}
	if resp.status != http.StatusOK {
		return "", resp.serverError("authorize page")
	}

	// 2. Sign in (remember=false gives an ephemeral token for this request).
	var did, ephemeral string
	if consent || handle != "" || password != "" {
		var signIn struct {
			Account struct {
				DID string `json:"did"`
			} `json:"account"`
			EphemeralToken string `json:"ephemeralToken"`
		}
		err = b.api(ctx, au, "sign-in", "", map[string]any{
			"locale":   "en",
			"username": handle,
			"password": password,
			"remember": false,
		}, &signIn)
		if err != nil {
			return "", err
		}
		did, ephemeral = signIn.Account.DID, signIn.EphemeralToken
		if did == "" || ephemeral == "" {
			return "", errors.New("refpds: sign-in answer lacks account.did or ephemeralToken")
		}
	}

	// 3. Consent or reject; both answer {"url": ".../oauth/authorize/redirect?..."}.
	var result struct {
		URL string `json:"url"`
	}
	if consent {
		err = b.api(ctx, au, "consent", ephemeral, map[string]any{"did": did}, &result)
	} else {
		err = b.api(ctx, au, "reject", "", map[string]any{}, &result)
	}
	if err != nil {
		return "", err
	}
	ru, err := url.Parse(result.URL)
	if err != nil || ru.Scheme != "https" || ru.Host != e.Hostname || ru.Path != "/oauth/authorize/redirect" {
		return "", fmt.Errorf("refpds: unexpected redirect URL from the server: %q", redact(result.URL))
	}

	// 4. The page navigates to the redirect URL; the server answers 303 to the client.
	resp, err = b.navigate(ctx, ru.String(), "same-origin", au.String())
	if err != nil {
		return "", fmt.Errorf("refpds: GET authorize/redirect: %w", err)
	}
	if loc, ok := redirectLocation(resp); ok {
		return loc, nil
	}
	if resp.status == http.StatusOK && strings.Contains(resp.body, "<form") {
		return "", errors.New("refpds: the server answered with a form_post redirect; only response_mode=query (indigo's default) is supported")
	}
	return "", resp.serverError("authorize/redirect")
}

type pageResponse struct {
	status   int
	location string
	body     string // at most 64 KiB
}

// serverError reads the error in an answer: a JSON body, or the error data
// that an HTML error page embeds (window["__errorData"]).
func (r *pageResponse) serverError(step string) *ServerError {
	se := &ServerError{Step: step, Status: r.status}
	var j struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
		Message          string `json:"message"`
	}
	body := r.body
	const marker = `window["__errorData"]=JSON.parse(`
	if i := strings.Index(body, marker); i >= 0 {
		rest := body[i+len(marker):]
		if end := strings.Index(rest, ");"); end >= 0 {
			if lit, err := strconv.Unquote(rest[:end]); err == nil {
				body = lit
			}
		}
	}
	if json.Unmarshal([]byte(body), &j) == nil {
		se.Code = j.Error
		se.Description = j.ErrorDescription
		if se.Description == "" {
			se.Description = j.Message
		}
	}
	return se
}

// ServerError is the server's refusal during [Env.SignInAndConsent] or
// [Env.SignInAndReject]: an error page or an error answer of the login
// page's API.
type ServerError struct {
	// Step is "authorize page", "sign-in", "consent", "reject" or
	// "authorize/redirect".
	Step   string
	Status int
	// Code and Description are the OAuth error and error_description (for
	// example "invalid_request", "Invalid identifier or password" or
	// "Unknown request_uri").
	Code        string
	Description string
}

func (e *ServerError) Error() string {
	msg := fmt.Sprintf("refpds: %s: HTTP %d", e.Step, e.Status)
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}

func redirectLocation(r *pageResponse) (string, bool) {
	switch r.status {
	case http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusMovedPermanently:
		return r.location, r.location != ""
	}
	return "", false
}

func (b *Browser) do(req *http.Request) (*pageResponse, error) {
	req.Header.Set("User-Agent", userAgent)
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	pr := &pageResponse{status: resp.StatusCode, body: string(body)}
	if loc := resp.Header.Get("Location"); loc != "" {
		if u, err := req.URL.Parse(loc); err == nil {
			pr.location = u.String()
		} else {
			pr.location = loc
		}
	}
	return pr, nil
}

// navigate is a top-level page load, as a browser sends it.
func (b *Browser) navigate(ctx context.Context, target, site, referer string) (*pageResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Accept-Language", "en")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	req.Header.Set("Sec-Fetch-Site", site)
	if referer != "" {
		req.Header.Set("Referer", referer)
	}
	return b.do(req)
}

// api is a same-origin fetch() from the login page to its JSON API.
func (b *Browser) api(ctx context.Context, authorize *url.URL, endpoint, bearer string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.env.Issuer+apiPrefix+"/"+endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	csrf := ""
	for _, c := range b.client.Jar.Cookies(authorize) {
		if c.Name == "csrf-token" {
			csrf = c.Value
		}
	}
	if csrf == "" {
		return fmt.Errorf("refpds: %s: the login page set no csrf-token cookie", endpoint)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Origin", b.env.Issuer)
	req.Header.Set("Referer", authorize.String())
	req.Header.Set("Sec-Fetch-Mode", "same-origin")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Dest", "empty")
	req.Header.Set("X-CSRF-Token", csrf)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := b.do(req)
	if err != nil {
		return fmt.Errorf("refpds: POST %s: %w", endpoint, err)
	}
	if resp.status != http.StatusOK {
		return resp.serverError(endpoint)
	}
	if err := json.Unmarshal([]byte(resp.body), out); err != nil {
		return fmt.Errorf("refpds: POST %s: answer is not JSON: %w", endpoint, err)
	}
	return nil
}

// redact drops the query of a URL for error messages (it may hold a code).
func redact(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		return s[:i] + "?…"
	}
	return s
}
