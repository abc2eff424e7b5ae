package ginoauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/internal/clientcheck"
)

// SelfCheckReport is the outcome of Manager.SelfCheck: what was checked
// and passed, what does not apply to this app (and why), and each problem
// with what was expected and what was found.
type SelfCheckReport struct {
	Checked  []string
	Skipped  []string
	Problems []SelfCheckProblem
}

// SelfCheckProblem is one thing an authorization server or a browser would
// trip over.
type SelfCheckProblem struct {
	Check    string // what was checked, e.g. "client_id in the document"
	Expected string
	Found    string
	Fix      string // what to change; may be ""
}

// Err is nil when the check found no problem, else an error listing them.
func (r *SelfCheckReport) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	lines := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		lines[i] = p.line()
	}
	return errors.New("ginoauth: self-check: " + strings.Join(lines, "; "))
}

func (p SelfCheckProblem) line() string {
	s := p.Check + ": expected " + p.Expected + ", found " + p.Found
	if p.Fix != "" {
		s += " (" + p.Fix + ")"
	}
	return s
}

// String is the report, one line per item, for a log or a terminal.
func (r *SelfCheckReport) String() string {
	var b strings.Builder
	for _, s := range r.Checked {
		b.WriteString("ok       " + s + "\n")
	}
	for _, s := range r.Skipped {
		b.WriteString("skipped  " + s + "\n")
	}
	for _, p := range r.Problems {
		b.WriteString("PROBLEM  " + p.line() + "\n")
	}
	return b.String()
}

// SelfCheck does, from this process and over the network, what an
// authorization server and a browser will do with the app's deployment,
// and reports each difference from what the Config and the OAuth client
// say. Call it once the app is listening (its own public URL must answer):
//
//   - the redirect URI answers, as this app's callback (not Gin's 404, not
//     another app), and the request arrives with the origin BaseURL names:
//     behind a proxy, that it passes the original Host (or
//     X-Forwarded-Host) and X-Forwarded-Proto, and that Gin trusts the
//     proxy's X-Forwarded-For;
//   - the client metadata document at the client_id URL answers 200,
//     application/json, without a redirect, with client_id equal to its
//     URL, the redirect URIs, dpop_bound_access_tokens and every scope the
//     client asks for, and for a confidential client a JWKS whose kids
//     include the key new logins are signed with.
//
// A URL this machine cannot reach is reported as unreachable (with hairpin
// NAT named), not as a wrong document. For a loopback development client
// (client id http://localhost...), whose metadata no server fetches, it
// checks the redirect URI and scopes in the client id instead and says
// so. The metadata checks need an OAuth client with
// oauthclient.RegistrationReporter (indigoclient has it).
//
// client makes the requests; nil means a client with a 10-second timeout.
// The probe of the callback is signed with a key derived from
// CookieSecret, so any instance of the app answers it and nobody else can
// make it answer.
func (m *Manager) SelfCheck(ctx context.Context, client *http.Client) *SelfCheckReport {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	rep := &SelfCheckReport{}
	reg, hasReg := m.registration()
	redirect := m.origin + m.cfg.Routes.Callback
	if hasReg {
		redirect = reg.RedirectURIs[0]
	}
	reachable := m.probeCallback(ctx, client, redirect, rep)
	switch {
	case !hasReg:
		rep.Skipped = append(rep.Skipped, "client metadata: the OAuth client does not report its registration (oauthclient.RegistrationReporter), so there is nothing to compare it with")
	case isLoopbackClientID(reg.ClientID):
		rep.Skipped = append(rep.Skipped, "client metadata and JWKS: no authorization server fetches a loopback development client's metadata (client id http://localhost...); checked the client id's redirect_uri and scope instead")
		checkLoopbackClientID(reg, rep)
	case !reachable && sameHost(reg.ClientID, redirect):
		rep.Skipped = append(rep.Skipped, "client metadata at "+reg.ClientID+": not fetched, its host is unreachable from here (see above)")
	default:
		res := clientcheck.Metadata(ctx, client, clientcheck.Expect{
			ClientID: reg.ClientID, RedirectURIs: reg.RedirectURIs, Scopes: reg.Scopes,
			Confidential: reg.Confidential, KeyIDs: reg.KeyIDs,
		})
		rep.Checked = append(rep.Checked, res.Checked...)
		rep.Skipped = append(rep.Skipped, res.Skipped...)
		for _, p := range res.Problems {
			rep.Problems = append(rep.Problems, SelfCheckProblem(p))
		}
	}
	return rep
}

// registration is the OAuth client's registration, when it reports one
// with a redirect URI.
func (m *Manager) registration() (oauthclient.Registration, bool) {
	rr, ok := m.client.(oauthclient.RegistrationReporter)
	if !ok {
		return oauthclient.Registration{}, false
	}
	reg := rr.Registration()
	return reg, len(reg.RedirectURIs) > 0
}

func sameHost(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Host == ub.Host
}

// checkLoopbackClientID checks what a loopback client's id says: the
// redirect URI (any port: RFC 8252 section 7.3) and the scopes.
func checkLoopbackClientID(reg oauthclient.Registration, rep *SelfCheckReport) {
	u, err := url.Parse(reg.ClientID)
	if err != nil {
		return
	}
	q := u.Query()
	ru, err := url.Parse(reg.RedirectURIs[0])
	if err != nil {
		return
	}
	listed := false
	for _, r := range q["redirect_uri"] {
		if lu, err := url.Parse(r); err == nil && lu.Scheme == ru.Scheme && lu.Hostname() == ru.Hostname() && lu.Path == ru.Path {
			listed = true
		}
	}
	if len(q["redirect_uri"]) > 0 && !listed {
		rep.Problems = append(rep.Problems, SelfCheckProblem{Check: "redirect_uri in the loopback client id", Expected: reg.RedirectURIs[0] + " (any port)",
			Found: strings.Join(q["redirect_uri"], " "), Fix: "build the client with indigoclient.LocalhostConfig(callbackURL, scopes)"})
	} else {
		rep.Checked = append(rep.Checked, "the loopback client id names the redirect URI "+reg.RedirectURIs[0])
	}
	if sc := q.Get("scope"); sc != "" {
		declared := strings.Fields(sc)
		var lack []string
		for _, s := range reg.Scopes {
			if !slices.Contains(declared, s) {
				lack = append(lack, s)
			}
		}
		if len(lack) > 0 {
			rep.Problems = append(rep.Problems, SelfCheckProblem{Check: "scope in the loopback client id", Expected: "to include " + strings.Join(lack, " "), Found: strconv.Quote(sc)})
		} else {
			rep.Checked = append(rep.Checked, "the loopback client id declares the scopes "+sc)
		}
	}
}

// selfCheckHeader carries the callback probe's signed nonce.
const selfCheckHeader = "Ginoauth-Self-Check"

// selfCheckProbe is how the callback answers a signed probe: the request
// as the app received it (headers a proxy sets; nothing secret).
type selfCheckProbe struct {
	SelfCheck      bool   `json:"ginoauth_self_check"`
	Origin         string `json:"origin"` // as the request makes it out: scheme and host
	Host           string `json:"host"`
	ForwardedProto string `json:"x_forwarded_proto,omitempty"`
	ForwardedHost  string `json:"x_forwarded_host,omitempty"`
	ForwardedFor   string `json:"x_forwarded_for,omitempty"` // its first address: the prober's own
	ClientIP       string `json:"client_ip"`
	RemoteIP       string `json:"remote_ip"`
}

func (m *Manager) selfCheckMAC(nonce string) string {
	h := hmac.New(sha256.New, m.refKey)
	h.Write([]byte("ginoauth self-check v1\x00" + nonce))
	return hex.EncodeToString(h.Sum(nil))
}

// answerSelfCheck answers a signed self-check probe at the callback and
// reports whether it did. The nonce carries its time: a probe is good for
// five minutes.
func (m *Manager) answerSelfCheck(c *gin.Context) bool {
	v := c.GetHeader(selfCheckHeader)
	if v == "" {
		return false
	}
	nonce, mac, ok := strings.Cut(v, ".")
	ts, _, _ := strings.Cut(nonce, "-")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || !hmac.Equal([]byte(mac), []byte(m.selfCheckMAC(nonce))) {
		return false
	}
	if d := m.now().Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return false
	}
	r := c.Request
	p := selfCheckProbe{SelfCheck: true, Host: r.Host, ForwardedProto: firstValue(r.Header.Get("X-Forwarded-Proto")),
		ForwardedHost: firstValue(r.Header.Get("X-Forwarded-Host")), ForwardedFor: firstValue(r.Header.Get("X-Forwarded-For")),
		ClientIP: c.ClientIP(), RemoteIP: c.RemoteIP()}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if p.ForwardedProto != "" {
		scheme = p.ForwardedProto
	}
	if p.ForwardedHost != "" {
		host = p.ForwardedHost
	}
	if u, err := url.Parse(scheme + "://" + host); err == nil {
		p.Origin = canonicalOrigin(u)
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, p)
	c.Abort()
	return true
}

func firstValue(h string) string {
	v, _, _ := strings.Cut(h, ",")
	return strings.TrimSpace(v)
}

// probeCallback sends the signed probe to the redirect URI and checks the
// answer; it reports whether the URL was reachable at all.
func (m *Manager) probeCallback(ctx context.Context, client *http.Client, redirect string, rep *SelfCheckReport) bool {
	nonce := strconv.FormatInt(m.now().Unix(), 10) + "-" + rand.Text()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, redirect, nil)
	if err != nil {
		rep.Problems = append(rep.Problems, SelfCheckProblem{Check: "the redirect URI", Expected: "a URL", Found: strconv.Quote(redirect)})
		return false
	}
	req.Header.Set(selfCheckHeader, nonce+"."+m.selfCheckMAC(nonce))
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		rep.Problems = append(rep.Problems, SelfCheckProblem(clientcheck.Unreachable(redirect, err)))
		return false
	}
	defer resp.Body.Close()
	var p selfCheckProbe
	ok := resp.StatusCode == http.StatusOK && json.NewDecoder(io.LimitReader(resp.Body, 1<<14)).Decode(&p) == nil && p.SelfCheck
	path := m.cfg.Routes.Callback
	switch {
	case resp.StatusCode == http.StatusNotFound:
		rep.Problems = append(rep.Problems, SelfCheckProblem{Check: "the callback at the redirect URI " + redirect, Expected: "this app's callback", Found: "404: nothing is mounted there",
			Fix: fmt.Sprintf("Mount the routes so that the callback (Routes.Callback %q) is at the redirect URI's path", path)})
		return true
	case !ok:
		rep.Problems = append(rep.Problems, SelfCheckProblem{Check: "the callback at the redirect URI " + redirect, Expected: "this app's callback", Found: fmt.Sprintf("%d from something else", resp.StatusCode),
			Fix: "the URL reaches another app, another route, or an instance with another CookieSecret: check the proxy's routes"})
		return true
	}
	rep.Checked = append(rep.Checked, "the redirect URI "+redirect+" reaches this app's callback")
	if p.Origin != m.origin {
		fwd := fmt.Sprintf("Host %s, X-Forwarded-Proto %s, X-Forwarded-Host %s", p.Host, orAbsent(p.ForwardedProto), orAbsent(p.ForwardedHost))
		rep.Problems = append(rep.Problems, SelfCheckProblem{Check: "the origin the app sees for " + redirect, Expected: m.origin + " (BaseURL)", Found: p.Origin + " (" + fwd + ")",
			Fix: "have the proxy pass the original Host (or X-Forwarded-Host) and X-Forwarded-Proto: URLs built from the request (a client_id, a DPoP htu, a redirect) would name the wrong origin"})
	} else {
		rep.Checked = append(rep.Checked, "requests arrive with the origin "+m.origin)
	}
	// Gin ignored X-Forwarded-For when it answered with the proxy's own
	// address although the header named another.
	if p.ForwardedFor != "" && p.ClientIP == p.RemoteIP && p.ForwardedFor != p.RemoteIP {
		rep.Problems = append(rep.Problems, SelfCheckProblem{Check: "the client address behind the proxy", Expected: "Gin to take it from X-Forwarded-For", Found: "it ignores X-Forwarded-For from the proxy at " + p.RemoteIP,
			Fix: fmt.Sprintf("r.SetTrustedProxies([]string{%q}): else every client counts as the proxy for the login rate limits", p.RemoteIP)})
	} else if p.ForwardedFor == "" {
		rep.Skipped = append(rep.Skipped, "client address: no X-Forwarded-For reached the app (no proxy in front, or one that does not set it)")
	}
	return true
}

func orAbsent(s string) string {
	if s == "" {
		return "absent"
	}
	return s
}
