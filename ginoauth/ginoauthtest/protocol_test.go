package ginoauthtest_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
)

// Each case below is a client skipping or botching one step; the server
// must refuse it.

func TestPARRequiresValidDPoPProof(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	par := srv.Issuer() + "/oauth/par"
	other := newKey(t)
	cases := []struct {
		name string
		p    func(f *rawFlow) string
		want string
	}{
		{"no proof", func(f *rawFlow) string { return "" }, "invalid_dpop_proof"},
		{"not a JWT", func(f *rawFlow) string { return "abc.def" }, "invalid_dpop_proof"},
		{"no nonce", func(f *rawFlow) string {
			return makeProof(t, proof{key: f.key, htm: "POST", htu: par, nonce: "-"})
		}, "use_dpop_nonce"},
		{"unknown nonce", func(f *rawFlow) string {
			return makeProof(t, proof{key: f.key, htm: "POST", htu: par, nonce: "made-up"})
		}, "use_dpop_nonce"},
		{"wrong htu path", func(f *rawFlow) string {
			return makeProof(t, proof{key: f.key, htm: "POST", htu: srv.Issuer() + "/oauth/token", nonce: srv.DPoPNonce()})
		}, "invalid_dpop_proof"},
		{"wrong htu host", func(f *rawFlow) string {
			return makeProof(t, proof{key: f.key, htm: "POST", htu: "https://evil.test/oauth/par", nonce: srv.DPoPNonce()})
		}, "invalid_dpop_proof"},
		{"http htu", func(f *rawFlow) string {
			return makeProof(t, proof{key: f.key, htm: "POST", htu: "http://pds.test/oauth/par", nonce: srv.DPoPNonce()})
		}, "invalid_dpop_proof"},
		{"wrong htm", func(f *rawFlow) string {
			return makeProof(t, proof{key: f.key, htm: "GET", htu: par, nonce: srv.DPoPNonce()})
		}, "invalid_dpop_proof"},
		{"wrong typ", func(f *rawFlow) string {
			return makeProof(t, proof{key: f.key, typ: "JWT", htm: "POST", htu: par, nonce: srv.DPoPNonce()})
		}, "invalid_dpop_proof"},
		{"wrong alg", func(f *rawFlow) string {
			return makeProof(t, proof{key: f.key, alg: "ES256K", htm: "POST", htu: par, nonce: srv.DPoPNonce()})
		}, "invalid_dpop_proof"},
		{"signed by another key", func(f *rawFlow) string {
			return makeProof(t, proof{key: other, jwkOf: f.key, htm: "POST", htu: par, nonce: srv.DPoPNonce()})
		}, "invalid_dpop_proof"},
		{"old iat", func(f *rawFlow) string {
			return makeProof(t, proof{key: f.key, htm: "POST", htu: par, nonce: srv.DPoPNonce(), iat: time.Now().Add(-5 * time.Minute), noClaim: "exp"})
		}, "invalid_dpop_proof"},
		{"future iat", func(f *rawFlow) string {
			return makeProof(t, proof{key: f.key, htm: "POST", htu: par, nonce: srv.DPoPNonce(), iat: time.Now().Add(5 * time.Minute)})
		}, "invalid_dpop_proof"},
		{"no jti", func(f *rawFlow) string {
			return makeProof(t, proof{key: f.key, htm: "POST", htu: par, nonce: srv.DPoPNonce(), noClaim: "jti"})
		}, "invalid_dpop_proof"},
		{"no iat", func(f *rawFlow) string {
			return makeProof(t, proof{key: f.key, htm: "POST", htu: par, nonce: srv.DPoPNonce(), noClaim: "iat"})
		}, "invalid_dpop_proof"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newRawFlow(t, srv)
			r := postForm(t, srv, "/oauth/par", f.parForm(), c.p(f))
			if r.status != http.StatusBadRequest || r.errCode() != c.want {
				t.Fatalf("got %d %v, want 400 %s", r.status, r.body, c.want)
			}
			if c.want == "use_dpop_nonce" && r.header.Get("DPoP-Nonce") != srv.DPoPNonce() {
				t.Fatalf("DPoP-Nonce header %q, want the current nonce", r.header.Get("DPoP-Nonce"))
			}
		})
	}
	if srv.Stats().PARs != 0 {
		t.Fatal("a PAR was accepted")
	}

	t.Run("valid, then the same proof again", func(t *testing.T) {
		f := newRawFlow(t, srv)
		p := f.proof("/oauth/par")
		if r := postForm(t, srv, "/oauth/par", f.parForm(), p); r.status != http.StatusCreated ||
			!strings.HasPrefix(r.str("request_uri"), "urn:ietf:params:oauth:request_uri:") || r.body["expires_in"] == nil {
			t.Fatalf("valid PAR: %d %v", r.status, r.body)
		}
		if r := postForm(t, srv, "/oauth/par", f.parForm(), p); r.status != http.StatusBadRequest || r.errCode() != "invalid_dpop_proof" {
			t.Fatalf("replayed jti: %d %v", r.status, r.body)
		}
	})

	t.Run("previous nonce still valid after one rotation", func(t *testing.T) {
		f := newRawFlow(t, srv)
		nonce := srv.DPoPNonce()
		srv.RotateDPoPNonce()
		p := makeProof(t, proof{key: f.key, htm: "POST", htu: par, nonce: nonce})
		if r := postForm(t, srv, "/oauth/par", f.parForm(), p); r.status != http.StatusCreated {
			t.Fatalf("previous nonce: %d %v", r.status, r.body)
		}
		srv.RotateDPoPNonce()
		p = makeProof(t, proof{key: f.key, htm: "POST", htu: par, nonce: nonce})
		if r := postForm(t, srv, "/oauth/par", f.parForm(), p); r.errCode() != "use_dpop_nonce" {
			t.Fatalf("nonce two rotations old: %d %v", r.status, r.body)
		}
	})
}

func TestPARChecksTheRequest(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	cases := []struct {
		name   string
		change func(v url.Values)
		want   string
	}{
		{"unknown https client", func(v url.Values) { v.Set("client_id", "https://unknown.test/client.json") }, "invalid_client"},
		{"no client_id", func(v url.Values) { v.Del("client_id") }, "invalid_client"},
		{"redirect_uri not registered", func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1/elsewhere") }, "invalid_request"},
		{"redirect_uri on another host", func(v url.Values) { v.Set("redirect_uri", "https://evil.test/callback") }, "invalid_request"},
		{"no redirect_uri", func(v url.Values) { v.Del("redirect_uri") }, "invalid_request"},
		{"response_type token", func(v url.Values) { v.Set("response_type", "token") }, "unsupported_response_type"},
		{"no state", func(v url.Values) { v.Del("state") }, "invalid_request"},
		{"plain PKCE", func(v url.Values) { v.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"no code_challenge", func(v url.Values) { v.Del("code_challenge") }, "invalid_request"},
		{"scope without atproto", func(v url.Values) { v.Set("scope", "transition:generic") }, "invalid_scope"},
		{"scope not declared by client", func(v url.Values) { v.Set("scope", "atproto transition:chat.bsky") }, "invalid_scope"},
		{"client assertion from a public client", func(v url.Values) {
			v.Set("client_assertion_type", oauth.ClientAssertionJWTBearer)
			v.Set("client_assertion", "x.y.z")
		}, "invalid_client"},
		{"repeated parameter", func(v url.Values) { v.Add("state", "again") }, "invalid_request"},
		{"fragment response mode", func(v url.Values) { v.Set("response_mode", "fragment") }, "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newRawFlow(t, srv)
			form := f.parForm()
			c.change(form)
			r := postForm(t, srv, "/oauth/par", form, f.proof("/oauth/par"))
			if r.status != http.StatusBadRequest || r.errCode() != c.want {
				t.Fatalf("got %d %v, want 400 %s", r.status, r.body, c.want)
			}
		})
	}
	t.Run("localhost client without redirect_uri gets the loopback defaults", func(t *testing.T) {
		f := newRawFlow(t, srv)
		f.clientID = "http://localhost"
		form := f.parForm()
		form.Set("scope", "atproto")
		form.Set("redirect_uri", "http://127.0.0.1:8080/")
		if r := postForm(t, srv, "/oauth/par", form, f.proof("/oauth/par")); r.status != http.StatusCreated {
			t.Fatalf("got %d %v", r.status, r.body)
		}
		form.Set("redirect_uri", "http://localhost/")
		if r := postForm(t, srv, "/oauth/par", form, f.proof("/oauth/par")); r.status != http.StatusBadRequest {
			t.Fatalf("localhost redirect: got %d %v", r.status, r.body)
		}
	})
}

func TestTokenEndpointChecks(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	cases := []struct {
		name  string
		setup func(f *rawFlow) (url.Values, string)
		want  string
	}{
		{"wrong code_verifier", func(f *rawFlow) (url.Values, string) {
			form := f.tokenForm()
			form.Set("code_verifier", rand.Text()+rand.Text())
			return form, f.proof("/oauth/token")
		}, "invalid_grant"},
		{"no code_verifier", func(f *rawFlow) (url.Values, string) {
			form := f.tokenForm()
			form.Del("code_verifier")
			return form, f.proof("/oauth/token")
		}, "invalid_grant"},
		{"different DPoP key than PAR", func(f *rawFlow) (url.Values, string) {
			return f.tokenForm(), makeProof(t, proof{key: newKey(t), htm: "POST", htu: srv.Issuer() + "/oauth/token", nonce: srv.DPoPNonce()})
		}, "invalid_grant"},
		{"wrong redirect_uri", func(f *rawFlow) (url.Values, string) {
			form := f.tokenForm()
			form.Set("redirect_uri", "http://127.0.0.1/other")
			return form, f.proof("/oauth/token")
		}, "invalid_grant"},
		{"another client", func(f *rawFlow) (url.Values, string) {
			form := f.tokenForm()
			form.Set("client_id", oauth.NewLocalhostConfig(callbackURL, []string{"atproto"}).ClientID)
			return form, f.proof("/oauth/token")
		}, "invalid_grant"},
		{"unknown code", func(f *rawFlow) (url.Values, string) {
			form := f.tokenForm()
			form.Set("code", rand.Text())
			return form, f.proof("/oauth/token")
		}, "invalid_grant"},
		{"no DPoP proof", func(f *rawFlow) (url.Values, string) { return f.tokenForm(), "" }, "invalid_dpop_proof"},
		{"proof for the PAR endpoint", func(f *rawFlow) (url.Values, string) { return f.tokenForm(), f.proof("/oauth/par") }, "invalid_dpop_proof"},
		{"unsupported grant", func(f *rawFlow) (url.Values, string) {
			form := f.tokenForm()
			form.Set("grant_type", "password")
			return form, f.proof("/oauth/token")
		}, "unsupported_grant_type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newRawFlow(t, srv)
			f.approve("alice.test")
			form, p := c.setup(f)
			r := postForm(t, srv, "/oauth/token", form, p)
			if r.status != http.StatusBadRequest || r.errCode() != c.want {
				t.Fatalf("got %d %v, want 400 %s", r.status, r.body, c.want)
			}
		})
	}
	if st := srv.Stats(); st.CodeGrants != 0 || st.TokenErrors != len(cases) {
		t.Fatalf("stats: %+v", st)
	}

	t.Run("valid exchange, then the code again", func(t *testing.T) {
		f := newRawFlow(t, srv)
		f.approve("alice.test")
		r := f.tokens()
		alice, _ := srv.Account("alice.test")
		if r.str("token_type") != "DPoP" || r.str("sub") != alice.DID.String() || r.str("scope") != "atproto transition:generic" ||
			r.str("access_token") == "" || r.str("refresh_token") == "" || r.body["expires_in"].(float64) != 3600 {
			t.Fatalf("token response: %v", r.body)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Fatal("token response is cacheable")
		}
		again := postForm(t, srv, "/oauth/token", f.tokenForm(), f.proof("/oauth/token"))
		if again.errCode() != "invalid_grant" {
			t.Fatalf("reused code: %d %v", again.status, again.body)
		}
		// Like RFC 6749 asks, the replayed code revokes what it produced.
		if srv.TokenActive(r.str("access_token")) || srv.Stats().CodeReplays != 1 {
			t.Fatal("session survived a replayed code")
		}
	})

	t.Run("expired code", func(t *testing.T) {
		f := newRawFlow(t, srv)
		f.approve("alice.test")
		srv.Advance(ginoauthtest.CodeLifetime + time.Second)
		r := postForm(t, srv, "/oauth/token", f.tokenForm(), f.proof("/oauth/token"))
		if r.errCode() != "invalid_grant" || r.str("error_description") != "Code expired" {
			t.Fatalf("expired code: %d %v", r.status, r.body)
		}
	})

	t.Run("token endpoint asks for a nonce too", func(t *testing.T) {
		f := newRawFlow(t, srv)
		f.approve("alice.test")
		r := postForm(t, srv, "/oauth/token", f.tokenForm(), makeProof(t, proof{key: f.key, htm: "POST", htu: srv.Issuer() + "/oauth/token", nonce: "-"}))
		if r.status != 400 || r.errCode() != "use_dpop_nonce" || r.header.Get("DPoP-Nonce") == "" {
			t.Fatalf("got %d %v", r.status, r.body)
		}
		f.tokens() // the code was not spent by the nonce round
	})
}

func TestRefreshGrantChecks(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	f := newRawFlow(t, srv)
	f.approve("alice.test")
	tok := f.tokens()
	rt := tok.str("refresh_token")
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {f.clientID}, "refresh_token": {rt}}

	// Another key cannot use the refresh token, and trying does not spend it.
	r := postForm(t, srv, "/oauth/token", form, makeProof(t, proof{key: newKey(t), htm: "POST", htu: srv.Issuer() + "/oauth/token", nonce: srv.DPoPNonce()}))
	if r.errCode() != "invalid_grant" || !srv.TokenActive(rt) {
		t.Fatalf("refresh with another key: %d %v", r.status, r.body)
	}
	// Nor can another client.
	otherClient := url.Values{"grant_type": {"refresh_token"}, "client_id": {"http://localhost"}, "refresh_token": {rt}}
	if r = postForm(t, srv, "/oauth/token", otherClient, f.proof("/oauth/token")); r.errCode() != "invalid_grant" || !srv.TokenActive(rt) {
		t.Fatalf("refresh by another client: %d %v", r.status, r.body)
	}
	r = postForm(t, srv, "/oauth/token", form, f.proof("/oauth/token"))
	if r.status != 200 || r.str("refresh_token") == rt || r.str("refresh_token") == "" {
		t.Fatalf("refresh: %d %v", r.status, r.body)
	}
	newAT, newRT := r.str("access_token"), r.str("refresh_token")
	if srv.TokenActive(tok.str("access_token")) || !srv.TokenActive(newAT) {
		t.Fatal("refresh must replace the access token")
	}
	// Replay of the rotated-out token: exact error, and the session is gone.
	r = postForm(t, srv, "/oauth/token", form, f.proof("/oauth/token"))
	if r.status != 400 || r.errCode() != "invalid_grant" || r.str("error_description") != "Refresh token replayed" {
		t.Fatalf("replay: %d %v", r.status, r.body)
	}
	if srv.TokenActive(newAT) || srv.TokenActive(newRT) {
		t.Fatal("replay did not end the session")
	}
	form.Set("refresh_token", newRT)
	if r = postForm(t, srv, "/oauth/token", form, f.proof("/oauth/token")); r.errCode() != "invalid_grant" {
		t.Fatalf("current refresh token after replay: %d %v", r.status, r.body)
	}
	form.Set("refresh_token", "unknown")
	if r = postForm(t, srv, "/oauth/token", form, f.proof("/oauth/token")); r.errCode() != "invalid_grant" {
		t.Fatalf("unknown refresh token: %d %v", r.status, r.body)
	}
}

func TestRevocationEndpoint(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	f := newRawFlow(t, srv)
	f.approve("alice.test")
	tok := f.tokens()
	revoke := func(token, p string) rawResp {
		return postForm(t, srv, "/oauth/revoke", url.Values{"token": {token}, "client_id": {f.clientID}}, p)
	}
	if r := revoke(tok.str("refresh_token"), ""); r.errCode() != "invalid_dpop_proof" {
		t.Fatalf("revoke without DPoP: %d %v", r.status, r.body)
	}
	if r := revoke("never-issued", f.proof("/oauth/revoke")); r.status != 200 {
		t.Fatalf("unknown token: %d %v", r.status, r.body)
	}
	if !srv.TokenActive(tok.str("access_token")) {
		t.Fatal("session ended too early")
	}
	otherKey := makeProof(t, proof{key: newKey(t), htm: "POST", htu: srv.Issuer() + "/oauth/revoke", nonce: srv.DPoPNonce()})
	if r := revoke(tok.str("refresh_token"), otherKey); r.status != 400 || !srv.TokenActive(tok.str("refresh_token")) {
		t.Fatalf("revoke with another DPoP key: %d %v", r.status, r.body)
	}
	if r := revoke(tok.str("refresh_token"), f.proof("/oauth/revoke")); r.status != 200 {
		t.Fatalf("revoke: %d %v", r.status, r.body)
	}
	// Revoking the refresh token ended the whole session.
	if srv.TokenActive(tok.str("access_token")) || !srv.Revoked(tok.str("access_token")) {
		t.Fatal("access token survived revocation of its refresh token")
	}
	if st := srv.Stats(); st.Revocations != 2 || st.SessionsRevoked != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestPDSChecks(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	f := newRawFlow(t, srv)
	f.approve("alice.test")
	at := f.tokens().str("access_token")
	const nsid = "com.atproto.server.getSession"
	htu := srv.Issuer() + "/xrpc/" + nsid
	valid := func() proof {
		return proof{key: f.key, htm: "GET", htu: htu, nonce: srv.DPoPNonce(), ath: oauth.S256CodeChallenge(at)}
	}
	with := func(change func(p *proof)) string {
		p := valid()
		change(&p)
		return makeProof(t, p)
	}
	cases := []struct {
		name    string
		authz   string
		dpop    string
		status  int
		wwwAuth string // substring of WWW-Authenticate
	}{
		{"no credentials", "", "", 401, `DPoP`},
		{"Bearer scheme", "Bearer " + at, with(func(p *proof) {}), 401, `error="invalid_request"`},
		{"no DPoP proof", "DPoP " + at, "", 401, `error="invalid_dpop_proof"`},
		{"wrong ath", "DPoP " + at, with(func(p *proof) { p.ath = oauth.S256CodeChallenge("other") }), 401, `error="invalid_dpop_proof"`},
		{"no ath", "DPoP " + at, with(func(p *proof) { p.ath = "" }), 401, `error="invalid_dpop_proof"`},
		{"proof by another key", "DPoP " + at, with(func(p *proof) { p.key = newKey(t) }), 401, `error="invalid_token"`},
		{"forged signature", "DPoP " + at, with(func(p *proof) { p.jwkOf = p.key; p.key = newKey(t) }), 401, `error="invalid_dpop_proof"`},
		{"wrong htu", "DPoP " + at, with(func(p *proof) { p.htu = srv.Issuer() + "/xrpc/com.atproto.repo.createRecord" }), 401, `error="invalid_dpop_proof"`},
		{"wrong htm", "DPoP " + at, with(func(p *proof) { p.htm = "POST" }), 401, `error="invalid_dpop_proof"`},
		{"no nonce", "DPoP " + at, with(func(p *proof) { p.nonce = "-" }), 401, `error="use_dpop_nonce"`},
		{"unknown token", "DPoP x" + at, with(func(p *proof) { p.ath = oauth.S256CodeChallenge("x" + at) }), 401, `error="invalid_token"`},
		{"valid", "DPoP " + at, with(func(p *proof) {}), 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := pdsGet(t, srv, nsid, c.authz, c.dpop)
			if r.status != c.status || !strings.Contains(r.header.Get("WWW-Authenticate"), c.wwwAuth) {
				t.Fatalf("got %d %q %v, want %d %q", r.status, r.header.Get("WWW-Authenticate"), r.body, c.status, c.wwwAuth)
			}
			if c.status == 401 && r.errCode() == "" {
				t.Fatal("no XRPC error body")
			}
			if c.wwwAuth == `error="use_dpop_nonce"` && r.header.Get("DPoP-Nonce") != srv.DPoPNonce() {
				t.Fatal("no DPoP-Nonce header")
			}
		})
	}

	t.Run("same proof twice", func(t *testing.T) {
		p := with(func(p *proof) {})
		if r := pdsGet(t, srv, nsid, "DPoP "+at, p); r.status != 200 {
			t.Fatalf("first: %d %v", r.status, r.body)
		}
		if r := pdsGet(t, srv, nsid, "DPoP "+at, p); r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_dpop_proof") {
			t.Fatalf("replayed proof: %d %v", r.status, r.header)
		}
	})

	t.Run("expired token", func(t *testing.T) {
		srv.ExpireAccessTokens()
		r := pdsGet(t, srv, nsid, "DPoP "+at, with(func(p *proof) {}))
		want := `DPoP algs="ES256", error="invalid_token", error_description="The access token expired"`
		if r.status != 401 || r.header.Get("WWW-Authenticate") != want || r.errCode() != "invalid_token" {
			t.Fatalf("got %d %q %v", r.status, r.header.Get("WWW-Authenticate"), r.body)
		}
	})

	t.Run("public endpoints work without credentials", func(t *testing.T) {
		if r := pdsGet(t, srv, "_health", "", ""); r.status != 200 {
			t.Fatalf("health: %d", r.status)
		}
		if r := pdsGet(t, srv, "app.bsky.actor.getProfile?actor=alice.test", "", ""); r.status != 200 || r.str("handle") != "alice.test" {
			t.Fatalf("getProfile: %d %v", r.status, r.body)
		}
		if r := pdsGet(t, srv, "com.example.nothing", "", ""); r.status != 501 || r.errCode() != "MethodNotImplemented" {
			t.Fatalf("unknown method: %d %v", r.status, r.body)
		}
	})
}

// assertion builds a client assertion for TestConfidentialClientAuthentication.
type assertion struct {
	kid            string
	iss, sub, aud  string
	jti            string
	iat, exp       time.Time
	withoutExp     bool
	signWithOthers bool
}

func TestConfidentialClientAuthentication(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	const clientID = "https://app.test/oauth-client-metadata.json"
	cfg := oauth.NewPublicConfig(clientID, "https://app.test/callback", []string{"atproto"})
	key := newKey(t)
	if err := cfg.SetClientSecret(key, "kid1"); err != nil {
		t.Fatal(err)
	}
	md := cfg.ClientMetadata()
	jwks := cfg.PublicJWKS()
	md.JWKS = &jwks
	if err := srv.RegisterClient(md); err != nil {
		t.Fatal(err)
	}
	other := newKey(t)
	sign := func(a assertion) string {
		k := key
		if a.signWithOthers {
			k = other
		}
		claims := map[string]any{"iss": a.iss, "sub": a.sub, "aud": a.aud, "jti": a.jti, "iat": a.iat.Unix(), "exp": a.exp.Unix()}
		if a.withoutExp {
			delete(claims, "exp")
		}
		return signJWT(t, k, map[string]any{"alg": "ES256", "typ": "JWT", "kid": a.kid}, claims)
	}
	good := func() assertion {
		return assertion{kid: "kid1", iss: clientID, sub: clientID, aud: srv.Issuer(), jti: rand.Text(), iat: time.Now(), exp: time.Now().Add(time.Minute)}
	}
	par := func(assertionType, jwt string) rawResp {
		f := newRawFlow(t, srv)
		f.clientID = clientID
		f.redirect = "https://app.test/callback"
		form := f.parForm()
		form.Set("scope", "atproto")
		if assertionType != "" {
			form.Set("client_assertion_type", assertionType)
		}
		if jwt != "" {
			form.Set("client_assertion", jwt)
		}
		return postForm(t, srv, "/oauth/par", form, f.proof("/oauth/par"))
	}
	cases := []struct {
		name   string
		change func(a *assertion)
	}{
		{"signed by another key", func(a *assertion) { a.signWithOthers = true }},
		{"unknown kid", func(a *assertion) { a.kid = "kid2" }},
		{"no kid", func(a *assertion) { a.kid = "" }},
		{"wrong aud", func(a *assertion) { a.aud = "https://other.test" }},
		{"wrong iss", func(a *assertion) { a.iss = "https://evil.test/client.json" }},
		{"wrong sub", func(a *assertion) { a.sub = "did:plc:someone" }},
		{"expired", func(a *assertion) { a.iat, a.exp = time.Now().Add(-2*time.Minute), time.Now().Add(-time.Minute) }},
		{"no exp", func(a *assertion) { a.withoutExp = true }},
		{"stale iat", func(a *assertion) { a.iat = time.Now().Add(-time.Hour) }},
		{"no jti", func(a *assertion) { a.jti = "" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := good()
			c.change(&a)
			r := par(oauth.ClientAssertionJWTBearer, sign(a))
			if r.status != 400 || r.errCode() != "invalid_client" {
				t.Fatalf("got %d %v", r.status, r.body)
			}
		})
	}
	t.Run("no assertion", func(t *testing.T) {
		if r := par("", ""); r.errCode() != "invalid_client" {
			t.Fatalf("got %d %v", r.status, r.body)
		}
	})
	t.Run("assertion type without assertion", func(t *testing.T) {
		if r := par(oauth.ClientAssertionJWTBearer, ""); r.errCode() != "invalid_client" {
			t.Fatalf("got %d %v", r.status, r.body)
		}
	})
	t.Run("wrong assertion type", func(t *testing.T) {
		if r := par("urn:other", sign(good())); r.errCode() != "invalid_client" {
			t.Fatalf("got %d %v", r.status, r.body)
		}
	})
	t.Run("valid, then replayed", func(t *testing.T) {
		jwt := sign(good())
		if r := par(oauth.ClientAssertionJWTBearer, jwt); r.status != http.StatusCreated {
			t.Fatalf("valid assertion: %d %v", r.status, r.body)
		}
		if r := par(oauth.ClientAssertionJWTBearer, jwt); r.errCode() != "invalid_client" {
			t.Fatalf("replayed assertion: %d %v", r.status, r.body)
		}
	})
	t.Run("indigo's own assertion", func(t *testing.T) {
		jwt, err := cfg.NewClientAssertion(srv.Issuer())
		if err != nil {
			t.Fatal(err)
		}
		if r := par(oauth.ClientAssertionJWTBearer, jwt); r.status != http.StatusCreated {
			t.Fatalf("got %d %v", r.status, r.body)
		}
	})
	t.Run("metadata with a private key is refused", func(t *testing.T) {
		doc := `{"client_id":"https://bad.test/c.json","grant_types":["authorization_code"],"scope":"atproto","response_types":["code"],` +
			`"redirect_uris":["https://bad.test/cb"],"token_endpoint_auth_method":"private_key_jwt","token_endpoint_auth_signing_alg":"ES256",` +
			`"dpop_bound_access_tokens":true,"jwks":{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"secret","kid":"k"}]}}`
		if err := srv.RegisterClientJSON([]byte(doc)); err == nil {
			t.Fatal("accepted a jwks with a private key")
		}
	})
}

func TestRequestURIIsSingleUseAndExpires(t *testing.T) {
	ctx := context.Background()
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})

	f := newRawFlow(t, srv)
	f.approve("alice.test")
	again, err := srv.Consent(ctx, f.authorizeURL(), "alice.test", true)
	if err != nil {
		t.Fatal(err)
	}
	if q := mustQuery(t, again); q.Get("error") != "access_denied" || q.Get("code") != "" || q.Get("state") != f.state {
		t.Fatalf("second use: %s", again)
	}

	f = newRawFlow(t, srv)
	f.par()
	srv.Advance(ginoauthtest.RequestLifetime + time.Second)
	late, err := srv.Consent(ctx, f.authorizeURL(), "alice.test", true)
	if err != nil {
		t.Fatal(err)
	}
	if q := mustQuery(t, late); q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Fatalf("expired request: %s", late)
	}

	if _, err := srv.Consent(ctx, srv.Issuer()+"/oauth/authorize?client_id=x&request_uri=urn:ietf:params:oauth:request_uri:nope", "alice.test", true); err == nil {
		t.Fatal("unknown request_uri accepted")
	}
	f = newRawFlow(t, srv)
	f.par()
	if _, err := srv.Consent(ctx, f.authorizeURL(), "nobody.test", true); err == nil {
		t.Fatal("unknown account accepted")
	}
	bad := strings.Replace(f.authorizeURL(), url.QueryEscape(f.clientID), url.QueryEscape("http://localhost"), 1)
	if _, err := srv.Consent(ctx, bad, "alice.test", true); err == nil {
		t.Fatal("client_id mismatch accepted")
	}
}
