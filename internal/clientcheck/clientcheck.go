// Package clientcheck checks an AT Protocol OAuth client's published
// metadata the way an authorization server reads it: the document at the
// client_id URL, fetched without following redirects, and its JWKS. It is
// shared by ginoauth's Manager.SelfCheck and cmd/ginoauth-check.
package clientcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Expect is what the document must say. Empty fields are not compared
// (cmd/ginoauth-check knows only the URL).
type Expect struct {
	ClientID     string   // the URL fetched; the document's client_id must equal it
	RedirectURIs []string // each must be among redirect_uris
	Scopes       []string // each must be in scope (atproto always)
	Confidential bool     // private_key_jwt with a JWKS publishing KeyIDs
	KeyIDs       []string
}

// Problem is one thing an authorization server would refuse.
type Problem struct {
	Check    string // what was checked
	Expected string
	Found    string
	Fix      string // what to change; may be ""
}

// Result lists what was checked and passed, what did not apply (with why)
// and the problems.
type Result struct {
	Checked, Skipped []string
	Problems         []Problem
	// Unreachable is set when the document could not be fetched at all:
	// the other checks were not made.
	Unreachable bool
	// RedirectURIs are the document's redirect_uris.
	RedirectURIs []string
}

func (r *Result) ok(s string) { r.Checked = append(r.Checked, s) }
func (r *Result) bad(check, expected, found, fix string) {
	r.Problems = append(r.Problems, Problem{Check: check, Expected: expected, Found: found, Fix: fix})
}

// maxDocument bounds a fetched document, as servers bound theirs.
const maxDocument = 1 << 16

// Fetch GETs u as an authorization server does: no redirects followed,
// Accept: application/json. A transport failure is returned as err.
func Fetch(ctx context.Context, client *http.Client, u string) (status int, contentType string, body []byte, location string, err error) {
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", nil, "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, "", err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return 0, "", nil, "", err
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body, resp.Header.Get("Location"), nil
}

// Unreachable describes a transport failure to reach u, the app's own
// public URL, from where the check runs.
func Unreachable(u string, err error) Problem {
	fix := "check that the app is listening and that this URL reaches it"
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		fix = "the name does not resolve from here: check DNS (from inside a container or a private network the public name may not resolve)"
	case strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "timeout") || strings.Contains(err.Error(), "deadline exceeded"):
		fix = "this machine cannot reach its own public URL. If the URL works from outside, the network does not route a host's requests to its own public address (hairpin NAT): that does not stop authorization servers, so run `go run github.com/gin-atproto/oauth-sessions/cmd/ginoauth-check " + u + "` from another machine"
	}
	return Problem{Check: "reach " + u, Expected: "an HTTP answer", Found: "unreachable from here: " + err.Error(), Fix: fix}
}

// Metadata fetches exp.ClientID and checks the client metadata document
// against exp and the AT Protocol's rules.
func Metadata(ctx context.Context, client *http.Client, exp Expect) Result {
	var r Result
	u := exp.ClientID
	status, ctype, body, location, err := Fetch(ctx, client, u)
	if err != nil {
		r.Problems = append(r.Problems, Unreachable(u, err))
		r.Unreachable = true
		return r
	}
	check := "client metadata at " + u
	switch {
	case status >= 300 && status < 400:
		r.bad(check, "200", fmt.Sprintf("%d redirecting to %s", status, location), "authorization servers do not follow redirects: serve the document at the client_id URL itself (a proxy redirecting http to https, or adding a trailing slash, does this)")
		return r
	case status != http.StatusOK:
		r.bad(check, "200", fmt.Sprint(status), "serve the client metadata document at the client_id URL (Manager.Mount serves it at Config.Routes.ClientMetadata, default /oauth-client-metadata.json)")
		return r
	}
	r.ok(check + " answers 200")
	if mt, _, err := mime.ParseMediaType(ctype); err != nil || mt != "application/json" {
		r.bad(check+": Content-Type", "application/json", fmt.Sprintf("%q", ctype), "serve it as application/json (a proxy or static file server may change it)")
	} else {
		r.ok("its Content-Type is application/json")
	}
	if len(body) > maxDocument {
		r.bad(check, "a document under 64 KB", "a larger one", "")
		return r
	}
	var doc struct {
		ClientID         string          `json:"client_id"`
		RedirectURIs     []string        `json:"redirect_uris"`
		Scope            string          `json:"scope"`
		DPoPBound        *bool           `json:"dpop_bound_access_tokens"`
		AuthMethod       string          `json:"token_endpoint_auth_method"`
		JWKS             json.RawMessage `json:"jwks"`
		JWKSURI          string          `json:"jwks_uri"`
		GrantTypes       []string        `json:"grant_types"`
		ResponseTypes    []string        `json:"response_types"`
		ApplicationType  string          `json:"application_type"`
		TokenSigningAlgo string          `json:"token_endpoint_auth_signing_alg"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		r.bad(check, "a JSON object", "not JSON: "+err.Error(), "")
		return r
	}
	r.RedirectURIs = doc.RedirectURIs
	if doc.ClientID != u {
		r.bad("client_id in the document", u, fmt.Sprintf("%q", doc.ClientID), "the client_id must be exactly the URL the document is served at; build it from the public BaseURL, never from the request's Host (which a proxy changes)")
	} else {
		r.ok("client_id equals the URL")
	}
	want := exp.RedirectURIs
	if want == nil {
		want = []string{}
	}
	missing := []string{}
	for _, ru := range want {
		if !slices.Contains(doc.RedirectURIs, ru) {
			missing = append(missing, ru)
		}
	}
	switch {
	case len(doc.RedirectURIs) == 0:
		r.bad("redirect_uris", strings.Join(want, " "), "none", "")
	case len(missing) > 0:
		r.bad("redirect_uris", strings.Join(want, " "), strings.Join(doc.RedirectURIs, " "), "the document served is not this client's: is another app or an older deploy answering at this URL?")
	default:
		r.ok("redirect_uris include " + strings.Join(doc.RedirectURIs, " "))
	}
	cu, _ := url.Parse(u)
	for _, ru := range doc.RedirectURIs {
		if pu, err := url.Parse(ru); err == nil && doc.ApplicationType != "native" && (pu.Scheme != "https" || cu == nil || pu.Host != cu.Host) {
			r.bad("redirect URI "+ru, "https on the client id's host "+hostOf(cu), ru, "a web client's redirect URIs are https on the client_id's origin")
		}
	}
	if doc.DPoPBound == nil || !*doc.DPoPBound {
		r.bad("dpop_bound_access_tokens", "true", foundBool(doc.DPoPBound), "AT Protocol clients must ask for DPoP-bound tokens")
	} else {
		r.ok("dpop_bound_access_tokens is true")
	}
	scopes := strings.Fields(doc.Scope)
	var lack []string
	for _, s := range append([]string{"atproto"}, exp.Scopes...) {
		if !slices.Contains(scopes, s) && !slices.Contains(lack, s) {
			lack = append(lack, s)
		}
	}
	if len(lack) > 0 {
		r.bad("scope", "to include "+strings.Join(lack, " "), fmt.Sprintf("%q", doc.Scope), "declare every scope the client asks for: servers refuse a login asking for one not declared")
	} else {
		r.ok("scope declares " + doc.Scope)
	}
	if !slices.Contains(doc.GrantTypes, "authorization_code") || !slices.Contains(doc.GrantTypes, "refresh_token") {
		r.bad("grant_types", "authorization_code refresh_token", strings.Join(doc.GrantTypes, " "), "")
	}
	if !slices.Equal(doc.ResponseTypes, []string{"code"}) {
		r.bad("response_types", "code", strings.Join(doc.ResponseTypes, " "), "")
	}
	confidential := exp.Confidential || doc.AuthMethod == "private_key_jwt"
	if !confidential {
		if doc.AuthMethod != "none" {
			r.bad("token_endpoint_auth_method", "none (a public client)", fmt.Sprintf("%q", doc.AuthMethod), "")
		}
		r.Skipped = append(r.Skipped, "JWKS: a public client has no keys")
		return r
	}
	if doc.AuthMethod != "private_key_jwt" {
		r.bad("token_endpoint_auth_method", "private_key_jwt (a confidential client)", fmt.Sprintf("%q", doc.AuthMethod), "")
	}
	if doc.TokenSigningAlgo != "ES256" {
		r.bad("token_endpoint_auth_signing_alg", "ES256", fmt.Sprintf("%q", doc.TokenSigningAlgo), "")
	}
	jwks := doc.JWKS
	where := "jwks in the document"
	if len(jwks) == 0 && doc.JWKSURI != "" {
		where = "jwks_uri " + doc.JWKSURI
		st, ct, b, _, err := Fetch(ctx, client, doc.JWKSURI)
		switch {
		case err != nil:
			r.Problems = append(r.Problems, Unreachable(doc.JWKSURI, err))
			return r
		case st != http.StatusOK:
			r.bad(where, "200", fmt.Sprint(st), "serve the public JWKS there (Manager.Mount serves it at Config.Routes.JWKS)")
			return r
		}
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			r.bad(where+": Content-Type", "application/json", fmt.Sprintf("%q", ct), "")
		}
		jwks = b
	}
	if len(jwks) == 0 {
		r.bad("jwks", "the client's public keys (jwks or jwks_uri)", "neither", "a confidential client publishes the keys it signs with")
		return r
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		r.bad(where, "a JWK set", "not JSON: "+err.Error(), "")
		return r
	}
	var kids []string
	for _, k := range set.Keys {
		kid, _ := k["kid"].(string)
		if kid == "" {
			r.bad(where, "every key with a kid", "a key without one", "servers pick the key by kid")
		}
		if _, private := k["d"]; private {
			r.bad(where, "public keys only", "a private key member (d) for kid "+kid, "publish only the public halves; rotate this key now")
		}
		kids = append(kids, kid)
	}
	var absent []string
	for _, id := range exp.KeyIDs {
		if !slices.Contains(kids, id) {
			absent = append(absent, id)
		}
	}
	switch {
	case len(set.Keys) == 0:
		r.bad(where, "at least one key", "an empty set", "")
	case len(absent) > 0:
		r.bad(where, "the signing key ids "+strings.Join(exp.KeyIDs, " "), "kids "+strings.Join(kids, " "), "the key new logins are signed with must be published, or servers refuse its assertions (an instance with another key set answering?)")
	default:
		r.ok(where + " publishes kids " + strings.Join(kids, " "))
	}
	return r
}

func hostOf(u *url.URL) string {
	if u == nil {
		return "?"
	}
	return u.Host
}

func foundBool(b *bool) string {
	if b == nil {
		return "absent"
	}
	return fmt.Sprint(*b)
}
