package ginoauthtest

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// consentError is an authorization-endpoint failure that is shown to the
// user instead of being sent back to the client (the request cannot be
// trusted, or the user can fix the input and try again).
type consentError struct {
	status int
	msg    string
	retry  bool // the consent page can be shown again with msg
}

func (e *consentError) Error() string { return e.msg }

// requestForAuthorizeLocked finds the pending request for the authorization
// endpoint. A used or expired request is answered like the reference
// server: a redirect to the client with error=access_denied.
func (s *Server) requestForAuthorizeLocked(clientID, requestURI string) (*parRequest, string, *consentError) {
	if requestURI == "" || clientID == "" {
		return nil, "", &consentError{status: http.StatusBadRequest, msg: "client_id and request_uri are required"}
	}
	req := s.requests[requestURI]
	if req == nil {
		return nil, "", &consentError{status: http.StatusBadRequest, msg: "Unknown request_uri (it must come from this server's PAR endpoint)"}
	}
	if req.clientID != clientID {
		return nil, "", &consentError{status: http.StatusBadRequest, msg: "client_id does not match the pushed authorization request"}
	}
	if req.used {
		return nil, s.redirectLocked(req, url.Values{"error": {"access_denied"}, "error_description": {"This request has already been used"}}), nil
	}
	if !s.now().Before(req.expires) {
		req.used = true
		return nil, s.redirectLocked(req, url.Values{"error": {"access_denied"}, "error_description": {"This request has expired"}}), nil
	}
	return req, "", nil
}

// redirectLocked builds the authorization response: redirect_uri with the
// given parameters plus state and iss (RFC 9207), in the query.
func (s *Server) redirectLocked(req *parRequest, params url.Values) string {
	u, err := url.Parse(req.redirectURI)
	if err != nil { // checked at PAR
		panic(err)
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	q.Set("state", req.state)
	q.Set("iss", s.issuer)
	u.RawQuery = q.Encode()
	return u.String()
}

// decide is the user's decision on the consent page, shared by the page and
// [Server.Consent].
func (s *Server) decide(clientID, requestURI, account string, approve bool) (string, *consentError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, redirect, cerr := s.requestForAuthorizeLocked(clientID, requestURI)
	if cerr != nil || redirect != "" {
		return redirect, cerr
	}
	if req.prompt == "none" {
		return s.silentLocked(req)
	}
	return s.decideLocked(req, account, approve)
}

// decideLocked approves or denies a pending request. With prompt=create,
// approving for a handle that has no account first creates it (sign-up).
func (s *Server) decideLocked(req *parRequest, account string, approve bool) (string, *consentError) {
	if !approve {
		req.used = true
		s.stats.Denials++
		s.log.Info("authorization denied", "client_id", req.clientID, "request", shortID(req.uri))
		return s.redirectLocked(req, url.Values{"error": {"access_denied"}, "error_description": {"The user denied the request"}}), nil
	}
	acct := s.lookupAccountLocked(account)
	if acct == nil && req.prompt == "create" {
		var cerr *consentError
		if acct, cerr = s.signUpLocked(account); cerr != nil {
			return "", cerr
		}
	}
	if acct == nil {
		return "", &consentError{status: http.StatusBadRequest, msg: fmt.Sprintf("Unknown account %q: use the handle or DID of an account on %s", account, s.host), retry: true}
	}
	req.used = true
	code := randomToken()
	scope, denied := s.approvedScopeLocked(req.scope)
	s.codes[code] = &authCode{
		clientID:      req.clientID,
		redirectURI:   req.redirectURI,
		codeChallenge: req.codeChallenge,
		jkt:           req.jkt,
		did:           acct.DID,
		scope:         scope,
		denied:        denied,
		confidential:  req.confidential,
		clientAuth:    req.clientAuth,
		expires:       s.now().Add(CodeLifetime),
	}
	s.stats.Approvals++
	s.log.Info("authorization approved", "client_id", req.clientID, "did", acct.DID, "request", shortID(req.uri))
	return s.redirectLocked(req, url.Values{"code": {code}}), nil
}

// signUpLocked creates the account for handle typed on the sign-up form
// (prompt=create), with CreateAccount's rules.
func (s *Server) signUpLocked(handle string) (*Account, *consentError) {
	handle = strings.TrimPrefix(strings.TrimSpace(handle), "@")
	retry := func(msg string) *consentError {
		return &consentError{status: http.StatusBadRequest, msg: msg, retry: true}
	}
	if handle == "" {
		return nil, retry("Choose a handle for the new account")
	}
	if strings.HasPrefix(handle, "did:") {
		return nil, retry(fmt.Sprintf("Unknown account %s: a new account needs a handle, not a DID", handle))
	}
	a, err := s.createAccountLocked(Account{Handle: syntax.Handle(handle)})
	if err != nil {
		return nil, retry(fmt.Sprintf("Cannot create the account %q: %v", handle, err))
	}
	s.stats.AccountsCreated++
	s.log.Info("account signed up at consent", "did", a.DID, "handle", a.Handle)
	return s.accounts[a.DID], nil
}

// autoAccountLocked is the account auto-approve mode approves for: the
// login_hint account, or without a usable hint the only account. For a
// sign-up (prompt=create) only the hint counts, and decideLocked creates it
// if needed. "" means the page must be shown.
func (s *Server) autoAccountLocked(req *parRequest) string {
	if !s.autoApprove.Load() {
		return ""
	}
	if req.prompt == "create" {
		return req.loginHint
	}
	if a := s.lookupAccountLocked(req.loginHint); a != nil {
		return a.DID.String()
	}
	if len(s.accountList) == 1 {
		return s.accountList[0].String()
	}
	return ""
}

// silentLocked answers a prompt=none request, which must not show a page.
// There is no signed-in browser session here, so it ends with
// error=login_required like the reference server without one, unless
// auto-approve mode stands for a signed-in user who has consented.
func (s *Server) silentLocked(req *parRequest) (string, *consentError) {
	if account := s.autoAccountLocked(req); account != "" {
		return s.decideLocked(req, account, true)
	}
	req.used = true
	s.log.Info("silent authorization refused: no signed-in session", "client_id", req.clientID, "request", shortID(req.uri))
	return s.redirectLocked(req, url.Values{"error": {"login_required"}, "error_description": {"Login is required (prompt=none, and no one is signed in)"}}), nil
}

// Consent does what a user does on the consent page, without a browser:
// it approves (for account, a handle or DID) or denies the authorization
// request named by authorizeURL, the URL the client sent the user to
// (https://<host>/oauth/authorize?client_id=...&request_uri=...; a
// [Server.RewriteForBrowser] form works too). It returns the URL the browser
// would be redirected to: the client's redirect_uri with code, state and iss,
// or with error=access_denied. The test then GETs that URL through the app,
// with the browser's cookie jar.
//
// For a sign-up request (prompt=create), approving for a handle that has no
// account creates the account first, with [Server.CreateAccount]'s rules
// ("carol" becomes carol.test), as the sign-up form does; an existing account
// is approved as usual. A prompt=none request shows no page, so Consent
// returns what the authorization endpoint answers, whatever account and
// approve say: a redirect with error=login_required, or, in auto-approve
// mode, the approval. Approvals grant the requested scope minus
// [Server.DenyScopes].
//
// Like the page, a request that was already used or has expired yields a
// redirect with error=access_denied (not an error). An error is returned
// when the page would show one instead of redirecting: unknown request_uri,
// client_id mismatch, unknown account, or a handle that cannot be signed
// up.
func (s *Server) Consent(ctx context.Context, authorizeURL string, account string, approve bool) (redirectTo string, err error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	u, err := url.Parse(authorizeURL)
	if err != nil {
		return "", fmt.Errorf("ginoauthtest: Consent: bad authorize URL: %w", err)
	}
	if !strings.HasSuffix(u.Path, "/oauth/authorize") {
		return "", errors.New("ginoauthtest: Consent: not an authorization URL of this server (want .../oauth/authorize?client_id=...&request_uri=...)")
	}
	q := u.Query()
	redirect, cerr := s.decide(q.Get("client_id"), q.Get("request_uri"), account, approve)
	if cerr != nil {
		return "", fmt.Errorf("ginoauthtest: Consent: %s", cerr.msg)
	}
	return redirect, nil
}

type consentPage struct {
	Host        string
	ClientName  string
	ClientID    string
	RedirectURI string
	Scopes      []scopeItem
	Create      bool // prompt=create: the sign-up form
	RequestURI  string
	CSRF        string
	Account     *Account
	Initial     string
	Typed       string
	Known       []Account
	Error       string
}

// scopeItem is one requested scope on the page; an include: scope lists the
// permissions its set grants now.
type scopeItem struct {
	Value    string
	Includes []string
}

func (s *Server) handleAuthorizePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	clientID, requestURI := q.Get("client_id"), q.Get("request_uri")

	s.mu.Lock()
	req, redirect, cerr := s.requestForAuthorizeLocked(clientID, requestURI)
	if cerr != nil {
		s.mu.Unlock()
		s.renderError(w, cerr.status, cerr.msg)
		return
	}
	if redirect != "" {
		s.mu.Unlock()
		http.Redirect(w, r, redirect, http.StatusSeeOther)
		return
	}
	if req.prompt == "none" {
		redirect, cerr := s.silentLocked(req)
		s.mu.Unlock()
		if cerr != nil {
			s.renderError(w, cerr.status, cerr.msg)
			return
		}
		http.Redirect(w, r, redirect, http.StatusSeeOther) //nolint:gosec // redirect is the client's registered redirect_uri, checked at PAR
		return
	}
	if account := s.autoAccountLocked(req); account != "" {
		redirect, cerr := s.decideLocked(req, account, true)
		if cerr == nil {
			s.mu.Unlock()
			http.Redirect(w, r, redirect, http.StatusSeeOther) //nolint:gosec // redirect is the client's registered redirect_uri, checked at PAR
			return
		}
		// A sign-up hint that is not a usable handle: show the form,
		// saying why.
		page := s.pageLocked(req, nil)
		s.mu.Unlock()
		page.Error = cerr.msg
		s.renderConsent(w, http.StatusOK, page)
		return
	}
	hinted := s.lookupAccountLocked(req.loginHint)
	page := s.pageLocked(req, hinted)
	s.mu.Unlock()
	s.renderConsent(w, http.StatusOK, page)
}

func (s *Server) pageLocked(req *parRequest, hinted *Account) *consentPage {
	p := &consentPage{
		Host:        s.host,
		ClientName:  req.clientName,
		ClientID:    req.clientID,
		RedirectURI: req.redirectURI,
		RequestURI:  req.uri,
		CSRF:        s.csrfToken(req.uri),
		Create:      req.prompt == "create",
	}
	for _, v := range strings.Fields(req.scope) {
		item := scopeItem{Value: v}
		if inc := parseInclude(v); inc != nil {
			item.Includes = includeScopes(inc, s.permSets[syntax.NSID(inc.NSID)])
		}
		p.Scopes = append(p.Scopes, item)
	}
	if p.Create {
		p.Typed = strings.TrimPrefix(req.loginHint, "@")
		return p
	}
	if hinted != nil {
		a := *hinted
		p.Account = &a
		name := a.DisplayName
		if name == "" {
			name = a.Handle.String()
		}
		p.Initial = strings.ToUpper(string([]rune(name)[:1]))
	} else {
		p.Typed = req.loginHint
		for _, did := range s.accountList {
			p.Known = append(p.Known, *s.accounts[did])
		}
		if p.Typed == "" && len(p.Known) > 0 {
			p.Typed = p.Known[0].Handle.String()
		}
	}
	return p
}

func (s *Server) handleAuthorizeDecision(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		s.renderError(w, http.StatusForbidden, "Cross-site form submission refused")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, http.StatusBadRequest, "Malformed form")
		return
	}
	requestURI := r.PostForm.Get("request_uri")
	clientID := r.PostForm.Get("client_id")
	csrf := r.PostForm.Get("csrf_token")
	if requestURI == "" || subtle.ConstantTimeCompare([]byte(csrf), []byte(s.csrfToken(requestURI))) != 1 {
		s.renderError(w, http.StatusForbidden, "Invalid or missing CSRF token: reload the authorization page and try again")
		return
	}
	var approve bool
	switch r.PostForm.Get("decision") {
	case "approve":
		approve = true
	case "deny":
	default:
		s.renderError(w, http.StatusBadRequest, "decision must be approve or deny")
		return
	}
	account := r.PostForm.Get("account")
	redirect, cerr := s.decide(clientID, requestURI, account, approve)
	if cerr != nil {
		if cerr.retry {
			s.mu.Lock()
			req := s.requests[requestURI]
			if req == nil {
				s.mu.Unlock()
				s.renderError(w, cerr.status, cerr.msg)
				return
			}
			page := s.pageLocked(req, nil)
			s.mu.Unlock()
			page.Typed = account
			page.Error = cerr.msg
			s.renderConsent(w, cerr.status, page)
			return
		}
		s.renderError(w, cerr.status, cerr.msg)
		return
	}
	http.Redirect(w, r, redirect, http.StatusSeeOther) //nolint:gosec // redirect is the client's registered redirect_uri, checked at PAR
}

func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	// No form-action: browsers apply it to the redirect after the POST,
	// which goes to the client's redirect_uri.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
}

func (s *Server) renderConsent(w http.ResponseWriter, status int, p *consentPage) {
	setPageHeaders(w)
	w.WriteHeader(status)
	if err := consentTmpl.Execute(w, p); err != nil {
		s.log.Error("rendering consent page", "err", err)
	}
}

func (s *Server) renderError(w http.ResponseWriter, status int, msg string) {
	setPageHeaders(w)
	w.WriteHeader(status)
	_ = errorTmpl.Execute(w, map[string]any{"Host": s.host, "Status": status, "Message": msg})
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	setPageHeaders(w)
	_ = indexTmpl.Execute(w, map[string]any{"Host": s.host, "Issuer": s.issuer, "Accounts": s.Accounts()})
}

const pageStyle = `
:root{color-scheme:light dark;--bg:#f3f5f9;--card:#fff;--fg:#1a1f27;--muted:#5d6776;--accent:#0a5cf0;--border:#d8dde6;--danger:#b42318;--soft:#eef3ff}
@media (prefers-color-scheme:dark){:root{--bg:#0e1116;--card:#161a21;--fg:#e5e8ee;--muted:#98a2b1;--border:#2a313c;--accent:#4d8dff;--danger:#f97066;--soft:#1b2434}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;padding:24px}
main{background:var(--card);border:1px solid var(--border);border-radius:14px;max-width:460px;width:100%;padding:28px;box-shadow:0 10px 30px rgba(0,0,0,.06)}
.badge{display:inline-block;font-size:12px;letter-spacing:.05em;text-transform:uppercase;color:var(--muted);border:1px solid var(--border);border-radius:999px;padding:2px 10px;margin-bottom:14px}
h1{font-size:22px;line-height:1.3;margin:0 0 6px}
p{margin:0 0 16px;color:var(--muted)}
dl{margin:0 0 20px;display:grid;grid-template-columns:auto 1fr;gap:6px 14px;font-size:14px}
dt{color:var(--muted)}dd{margin:0;word-break:break-all}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
.scope{display:inline-block;background:var(--soft);border-radius:6px;padding:1px 7px;margin:0 4px 4px 0}
.includes{display:block;font-size:13px;color:var(--muted);margin:0 0 6px 12px}
label{display:block;font-size:14px;color:var(--muted);margin-bottom:6px}
input[type=text]{width:100%;padding:10px 12px;border:1px solid var(--border);border-radius:8px;background:transparent;color:inherit;font-size:16px;margin-bottom:8px}
.known{font-size:13px;color:var(--muted);margin:0 0 18px}
.account{display:flex;align-items:center;gap:12px;padding:12px 14px;border:1px solid var(--border);border-radius:10px;margin-bottom:20px}
.avatar{flex:none;width:42px;height:42px;border-radius:50%;background:var(--accent);color:#fff;display:flex;align-items:center;justify-content:center;font-weight:700;font-size:18px}
.who{min-width:0;line-height:1.35}.who code{color:var(--muted);word-break:break-all}
.error{color:var(--danger);background:transparent;border:1px solid var(--danger);border-radius:8px;padding:8px 12px}
.actions{display:flex;flex-direction:row-reverse;gap:12px;margin-top:8px}
button{flex:1;padding:11px 16px;border-radius:8px;font-size:16px;font-weight:600;cursor:pointer;border:1px solid var(--border);background:transparent;color:inherit}
button.primary{background:var(--accent);border-color:var(--accent);color:#fff}
button:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
footer{margin-top:22px;font-size:12px;color:var(--muted)}
`

var consentTmpl = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Authorize {{.ClientName}} · {{.Host}}</title>
<style>` + pageStyle + `</style></head>
<body><main>
<span class="badge">{{.Host}} · test authorization server</span>
{{if .Create}}<h1>Create an account for {{.ClientName}}</h1>
<p>This app wants you to sign up on <strong>{{.Host}}</strong> and act on the new account with the scopes below.</p>
{{else}}<h1>Authorize {{.ClientName}}</h1>
<p>This app wants to sign in with your account on <strong>{{.Host}}</strong> and act on it with the scopes below.</p>
{{end}}<dl>
<dt>Client</dt><dd><code>{{.ClientID}}</code></dd>
<dt>Returns to</dt><dd><code>{{.RedirectURI}}</code></dd>
<dt>Scopes</dt><dd>{{range .Scopes}}<code class="scope">{{.Value}}</code>{{if .Includes}}<span class="includes">grants {{range .Includes}}<code class="scope">{{.}}</code>{{end}}</span>{{end}}{{end}}</dd>
</dl>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="authorize">
<input type="hidden" name="client_id" value="{{.ClientID}}">
<input type="hidden" name="request_uri" value="{{.RequestURI}}">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
{{if .Create}}
<label for="account">Handle for the new account</label>
<input type="text" id="account" name="account" value="{{.Typed}}" autocomplete="off" spellcheck="false">
<p class="known">A handle without a dot gets <code>.test</code>. The handle of an existing account signs in to it instead.</p>
{{else if .Account}}
<div class="account"><div class="avatar" aria-hidden="true">{{.Initial}}</div>
<div class="who">{{if .Account.DisplayName}}<strong>{{.Account.DisplayName}}</strong><br>{{end}}<code>@{{.Account.Handle}}</code><br><code>{{.Account.DID}}</code></div></div>
<input type="hidden" name="account" value="{{.Account.DID}}">
{{else}}
<label for="account">Sign in as (handle or DID)</label>
<input type="text" id="account" name="account" value="{{.Typed}}" list="known-accounts" autocomplete="off" spellcheck="false">
<datalist id="known-accounts">{{range .Known}}<option value="{{.Handle}}">{{.DID}}</option>{{end}}</datalist>
<p class="known">{{if .Known}}Accounts on this server: {{range $i, $a := .Known}}{{if $i}}, {{end}}<code>{{$a.Handle}}</code>{{end}}{{else}}This server has no accounts yet (create them with CreateAccount).{{end}}</p>
{{end}}
<div class="actions">
<button class="primary" type="submit" name="decision" value="approve">{{if .Create}}Create account and approve{{else}}Approve{{end}}</button>
<button type="submit" name="decision" value="deny">Deny</button>
</div>
</form>
<footer>No password is asked: this server exists only for tests and local development.</footer>
</main></body></html>
`))

var errorTmpl = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Authorization error · {{.Host}}</title>
<style>` + pageStyle + `</style></head>
<body><main>
<span class="badge">{{.Host}} · test authorization server</span>
<h1>Authorization error</h1>
<p class="error" role="alert">{{.Message}}</p>
<footer>HTTP {{.Status}}. Start the login again from the app.</footer>
</main></body></html>
`))

var indexTmpl = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Host}} · ginoauthtest</title>
<style>` + pageStyle + `</style></head>
<body><main>
<span class="badge">ginoauthtest</span>
<h1>{{.Host}}</h1>
<p>A local AT Protocol OAuth authorization server and PDS for tests and offline development. Its public identity is <code>{{.Issuer}}</code>.</p>
<dl>{{range .Accounts}}<dt><code>@{{.Handle}}</code></dt><dd><code>{{.DID}}</code></dd>{{else}}<dt>Accounts</dt><dd>none yet</dd>{{end}}</dl>
</main></body></html>
`))
