package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The backend's routes (the library's defaults, ginoauth.Config.Routes).
const (
	PathMobileStart   = "/api/auth/mobile-start"
	PathMobileToken   = "/api/auth/mobile-token"
	PathMobileRefresh = "/api/auth/mobile-refresh"
	PathSession       = "/api/session"
	PathLogout        = "/api/logout"
)

// CallbackPath is the path of the app's loopback redirect URI. The backend
// registers http://127.0.0.1/native/callback, which matches any port.
const CallbackPath = "/native/callback"

// App is the native app's side of the flow: an HTTP client of the backend.
type App struct {
	Backend string        // the backend's origin, e.g. http://127.0.0.1:8080
	HTTP    *http.Client  // follows no redirects (see NewApp)
	Out     io.Writer     // where the steps are printed
	Wait    time.Duration // how long to wait for the browser; 0 means DefaultTimeout

	step int
}

// NewApp returns an app for the backend at backendURL that prints its steps
// to out. Plain http is refused except on loopback: the session token
// travels in every request.
func NewApp(backendURL string, out io.Writer) (*App, error) {
	origin, err := checkOrigin(backendURL)
	if err != nil {
		return nil, fmt.Errorf("backend URL: %w", err)
	}
	if out == nil {
		out = io.Discard
	}
	return &App{Backend: origin, Out: out, HTTP: &http.Client{
		Timeout: 30 * time.Second,
		// A redirect is reported, not followed: the API answers JSON, and a
		// request carrying the token goes nowhere but the backend.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// checkOrigin returns raw as an origin (scheme://host[:port]), requiring
// https, or http on a loopback host.
func checkOrigin(raw string) (string, error) {
	u, err := url.Parse(strings.TrimRight(strings.TrimSpace(raw), "/"))
	if err != nil || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("want an origin such as https://api.example.com or http://127.0.0.1:8080 (got %q)", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return "", fmt.Errorf("plain http only on loopback (127.0.0.1, [::1], localhost); use https for %s", u.Host)
		}
	default:
		return "", fmt.Errorf("want http(s) (got %q)", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Browser opens authURL in the system browser (or prints it, or, in a
// test, drives an HTTP client through the login). It may return before the
// login is done: the app then waits for the redirect on its loopback port.
type Browser func(ctx context.Context, authURL string) error

// PKCE is a code verifier and its S256 challenge (RFC 7636).
type PKCE struct {
	Verifier  string // 43 characters of base64url: 256 random bits; never leaves the app until mobile-token
	Challenge string // base64url(SHA-256(Verifier)); sent in mobile-start
}

// NewPKCE makes a new verifier and its challenge.
func NewPKCE() PKCE {
	v := randomString(32)
	sum := sha256.Sum256([]byte(v))
	return PKCE{Verifier: v, Challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

// randomString is n random bytes, base64url without padding.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Fingerprint is what the app prints instead of a secret: the first four
// bytes of its SHA-256, enough to tell two tokens apart and useless to
// anyone reading the output.
func Fingerprint(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:4])
}

// Session is the backend's answer to mobile-token and mobile-refresh.
type Session struct {
	Token     string    `json:"session_token"`
	TokenType string    `json:"token_type"` // "Bearer"
	ExpiresAt time.Time `json:"expires_at"`
	DID       string    `json:"did"`
	Handle    string    `json:"handle"`
	Scopes    []string  `json:"scopes"`
}

// String describes the session without its token, so that printing a
// Session by mistake shows no secret.
func (s *Session) String() string {
	return fmt.Sprintf("%s (%s), token %s, expires %s", s.Handle, s.DID, Fingerprint(s.Token), s.ExpiresAt.Format(time.RFC3339))
}

// GoString is String, for %#v.
func (s *Session) GoString() string { return s.String() }

// SessionInfo is GET /api/session's answer.
type SessionInfo struct {
	Valid     bool      `json:"valid"`
	DID       string    `json:"did"`
	Handle    string    `json:"handle"`
	Scopes    []string  `json:"scopes"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// APIError is a refusal from the backend: its HTTP status and, when the
// body says, the library's error code and message.
type APIError struct {
	Method, Path string
	Status       int
	Code         string // e.g. invalid_grant, invalid_redirect_uri, not_logged_in
	Message      string
	Location     string // for a redirect
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Location != "" {
		s += "; the backend redirects to " + e.Location + " (set BACKEND_URL to the origin it names)"
	}
	return s
}

// IsUnauthorized reports whether err is the backend's 401: no session, or
// a token it no longer accepts.
func IsUnauthorized(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusUnauthorized
}

// call sends a JSON request (body may be nil) to the backend, with the
// bearer token if there is one, and decodes a 2xx JSON answer into out.
func (a *App) call(ctx context.Context, method, path, token string, body, out any) error {
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.Backend+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &APIError{Method: method, Path: path, Status: resp.StatusCode}
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			ae.Location = resp.Header.Get("Location")
		}
		var e struct{ Error, Code string }
		if json.Unmarshal(data, &e) == nil {
			ae.Code, ae.Message = e.Code, e.Error
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not the JSON expected: %w", method, path, err)
	}
	return nil
}

// StartRequest is mobile-start's body.
type StartRequest struct {
	Handle              string `json:"handle"`
	CodeChallenge       string `json:"code_challenge"`
	CodeChallengeMethod string `json:"code_challenge_method"` // always "S256"
	RedirectURI         string `json:"redirect_uri"`
	State               string `json:"state"`
}

// Start asks the backend to start a login and returns the authorization
// URL to open in the system browser.
func (a *App) Start(ctx context.Context, req StartRequest) (string, error) {
	var out struct {
		AuthURL string `json:"authUrl"`
	}
	if err := a.call(ctx, http.MethodPost, PathMobileStart, "", req, &out); err != nil {
		return "", err
	}
	// The URL goes to the OS's URL opener: only a web page will do.
	u, err := url.Parse(out.AuthURL)
	webPage := err == nil && u.Host != "" && (u.Scheme == "https" || u.Scheme == "http" && isLoopback(u.Hostname()))
	if !webPage {
		return "", fmt.Errorf("%s: the backend answered %q, not an https authorization URL", PathMobileStart, out.AuthURL)
	}
	return out.AuthURL, nil
}

// Redeem exchanges the one-time code of the redirect, with the PKCE
// verifier and the same redirect URI, for a session token.
func (a *App) Redeem(ctx context.Context, code, verifier, redirectURI string) (*Session, error) {
	var s Session
	body := map[string]string{"code": code, "code_verifier": verifier, "redirect_uri": redirectURI}
	if err := a.call(ctx, http.MethodPost, PathMobileToken, "", body, &s); err != nil {
		return nil, err
	}
	return checkSession(PathMobileToken, &s)
}

// Refresh rotates the session token: the backend checks with the
// authorization server that the login still holds, and answers a new
// token. The old one keeps working for a short grace window only.
func (a *App) Refresh(ctx context.Context, token string) (*Session, error) {
	var s Session
	if err := a.call(ctx, http.MethodPost, PathMobileRefresh, token, nil, &s); err != nil {
		return nil, err
	}
	return checkSession(PathMobileRefresh, &s)
}

func checkSession(path string, s *Session) (*Session, error) {
	if s.Token == "" || !strings.EqualFold(s.TokenType, "Bearer") || s.DID == "" {
		return nil, fmt.Errorf("%s: the answer has no bearer session token", path)
	}
	return s, nil
}

// Session calls the backend's API with the token: GET /api/session, which
// answers who the token belongs to. A refused token is an *APIError with
// status 401 (IsUnauthorized).
func (a *App) Session(ctx context.Context, token string) (*SessionInfo, error) {
	var info SessionInfo
	if err := a.call(ctx, http.MethodGet, PathSession, token, nil, &info); err != nil {
		return nil, err
	}
	if !info.Valid {
		return nil, fmt.Errorf("%s: the backend says the session is not valid", PathSession)
	}
	return &info, nil
}

// Logout ends this device's session at the backend, which also revokes the
// login's OAuth tokens. Other devices of the account stay logged in.
func (a *App) Logout(ctx context.Context, token string) error {
	var out struct {
		Success bool `json:"success"`
	}
	if err := a.call(ctx, http.MethodPost, PathLogout, token, nil, &out); err != nil {
		return err
	}
	if !out.Success {
		return fmt.Errorf("%s: the backend did not confirm the logout", PathLogout)
	}
	return nil
}

// printf prints one numbered step.
func (a *App) printf(format string, args ...any) {
	a.step++
	fmt.Fprintf(a.Out, "%2d. "+format+"\n", append([]any{a.step}, args...)...)
}

// note prints a line under the current step.
func (a *App) note(format string, args ...any) {
	fmt.Fprintf(a.Out, "    "+format+"\n", args...)
}

// Login runs the native-app login: PKCE and state, the loopback listener,
// mobile-start, the system browser, the redirect, and mobile-token. It
// returns the session; the token is the caller's to keep safe.
func (a *App) Login(ctx context.Context, handle string, browser Browser) (*Session, error) {
	pkce := NewPKCE()
	state := randomString(16)
	a.printf("PKCE: a new code verifier (kept in memory) and its S256 challenge %s; a random state %s", pkce.Challenge, Fingerprint(state))

	lb, err := ListenLoopback(CallbackPath, state)
	if err != nil {
		return nil, err
	}
	defer lb.Close()
	a.printf("Loopback: listening for the browser's redirect on %s", lb.RedirectURI)

	authURL, err := a.Start(ctx, StartRequest{
		Handle: handle, CodeChallenge: pkce.Challenge, CodeChallengeMethod: "S256",
		RedirectURI: lb.RedirectURI, State: state,
	})
	if err != nil {
		return nil, err
	}
	a.printf("mobile-start: the backend answered the authorization URL. Open it in a browser to log in:")
	fmt.Fprintf(a.Out, "\n      %s\n\n", authURL)
	if err := browser(ctx, authURL); err != nil {
		return nil, fmt.Errorf("browser: %w", err)
	}

	wait := a.Wait
	if wait <= 0 {
		wait = DefaultTimeout
	}
	a.printf("Waiting up to %v for the browser to come back to the loopback port...", wait)
	code, err := lb.Wait(ctx, wait)
	if err != nil {
		return nil, err
	}
	a.note("redirect received: the state matches; one-time code %s", Fingerprint(code))

	s, err := a.Redeem(ctx, code, pkce.Verifier, lb.RedirectURI)
	if err != nil {
		return nil, err
	}
	a.printf("mobile-token: the backend checked the verifier against the challenge. Logged in as %s (%s)", s.Handle, s.DID)
	a.note("session token %s (%s), expires %s", Fingerprint(s.Token), s.TokenType, s.ExpiresAt.Local().Format(time.RFC1123))
	a.note("scopes: %s", strings.Join(s.Scopes, " "))
	return s, nil
}

// Report is what Run saw at each step.
type Report struct {
	Login   *Session     // mobile-token's answer
	Before  *SessionInfo // GET /api/session with the first token
	Rotated *Session     // mobile-refresh's answer
	After   *SessionInfo // GET /api/session with the new token
}

// Run is the whole demonstration: Login, an API call with the token, a
// rotation and a call with the new token, logout, and a last call that
// the backend must refuse.
func (a *App) Run(ctx context.Context, handle string, browser Browser) (*Report, error) {
	r := &Report{}
	var err error
	if r.Login, err = a.Login(ctx, handle, browser); err != nil {
		return r, err
	}

	if r.Before, err = a.Session(ctx, r.Login.Token); err != nil {
		return r, err
	}
	if r.Before.DID != r.Login.DID {
		return r, fmt.Errorf("%s: the token belongs to %s, not to %s", PathSession, r.Before.DID, r.Login.DID)
	}
	a.printf("GET %s with the token: valid, %s (%s), scopes %s", PathSession, r.Before.Handle, r.Before.DID, strings.Join(r.Before.Scopes, " "))

	if r.Rotated, err = a.Refresh(ctx, r.Login.Token); err != nil {
		return r, err
	}
	if r.Rotated.Token == r.Login.Token || r.Rotated.DID != r.Login.DID {
		return r, fmt.Errorf("%s: want a new token for the same account", PathMobileRefresh)
	}
	a.printf("mobile-refresh: rotated to the token %s; the old one %s works only for a short grace window now", Fingerprint(r.Rotated.Token), Fingerprint(r.Login.Token))

	if r.After, err = a.Session(ctx, r.Rotated.Token); err != nil {
		return r, err
	}
	if r.After.DID != r.Login.DID {
		return r, fmt.Errorf("%s: the new token belongs to %s, not to %s", PathSession, r.After.DID, r.Login.DID)
	}
	a.printf("GET %s with the new token: valid, %s (%s)", PathSession, r.After.Handle, r.After.DID)

	if err := a.Logout(ctx, r.Rotated.Token); err != nil {
		return r, err
	}
	a.printf("POST %s with the new token: this device is logged out, and the login's OAuth tokens revoked", PathLogout)

	switch _, err := a.Session(ctx, r.Rotated.Token); {
	case IsUnauthorized(err):
		a.printf("GET %s with the new token after logout: refused (401), as it must be", PathSession)
	case err != nil:
		return r, err
	default:
		return r, fmt.Errorf("%s: the token still works after logout", PathSession)
	}
	return r, nil
}
