package ginoauthtest_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
)

const callbackURL = "http://127.0.0.1/callback"

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newApp is an indigo ClientApp (loopback development client) pointed at srv.
func newApp(srv *ginoauthtest.Server, scopes ...string) (*oauth.ClientApp, *oauth.MemStore) {
	if len(scopes) == 0 {
		scopes = []string{"atproto", "transition:generic"}
	}
	cfg := oauth.NewLocalhostConfig(callbackURL, scopes)
	store := oauth.NewMemStore()
	app := oauth.NewClientApp(&cfg, store)
	app.Client = srv.HTTPClient()
	app.Resolver.Client = srv.HTTPClient()
	app.Dir = srv.Directory()
	return app, store
}

// login runs indigo's whole flow: StartAuthFlow, consent, ProcessCallback.
func login(t *testing.T, ctx context.Context, srv *ginoauthtest.Server, app *oauth.ClientApp, acct ginoauthtest.Account) *oauth.ClientSessionData {
	t.Helper()
	authURL, err := app.StartAuthFlow(ctx, acct.Handle.String())
	if err != nil {
		t.Fatalf("StartAuthFlow: %v", err)
	}
	redirect, err := srv.Consent(ctx, authURL, acct.Handle.String(), true)
	if err != nil {
		t.Fatalf("Consent: %v", err)
	}
	sd, err := app.ProcessCallback(ctx, mustQuery(t, redirect))
	if err != nil {
		t.Fatalf("ProcessCallback: %v", err)
	}
	return sd
}

func mustQuery(t *testing.T, rawURL string) url.Values {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse %q: %v", rawURL, err)
	}
	return u.Query()
}

type sessionResp struct {
	DID    string `json:"did"`
	Handle string `json:"handle"`
	Active bool   `json:"active"`
}

func getSession(ctx context.Context, sess *oauth.ClientSession) (sessionResp, error) {
	var out sessionResp
	err := sess.APIClient().Get(ctx, syntax.NSID("com.atproto.server.getSession"), nil, &out)
	return out, err
}

func newKey(t *testing.T) *atcrypto.PrivateKeyP256 {
	t.Helper()
	k, err := atcrypto.GeneratePrivateKeyP256()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func b64(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// signJWT signs header and claims with ES256 (raw r||s), as indigo does.
func signJWT(t *testing.T, key atcrypto.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	input := b64(header) + "." + b64(claims)
	sig, err := key.HashAndSign([]byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func publicJWK(t *testing.T, key atcrypto.PrivateKey) *atcrypto.JWK {
	t.Helper()
	pub, err := key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := pub.JWK()
	if err != nil {
		t.Fatal(err)
	}
	return jwk
}

// proof describes a DPoP proof; zero fields get valid defaults from
// makeProof.
type proof struct {
	key     atcrypto.PrivateKey // signs, and its public key goes in the header
	jwkOf   atcrypto.PrivateKey // if set, the header carries this key's JWK instead
	typ     string
	alg     string
	htm     string
	htu     string
	nonce   string // "-" for none
	ath     string
	jti     string
	iat     time.Time
	noClaim string // a claim to leave out
}

func makeProof(t *testing.T, p proof) string {
	t.Helper()
	jwkKey := p.key
	if p.jwkOf != nil {
		jwkKey = p.jwkOf
	}
	header := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": publicJWK(t, jwkKey)}
	if p.typ != "" {
		header["typ"] = p.typ
	}
	if p.alg != "" {
		header["alg"] = p.alg
	}
	if p.iat.IsZero() {
		p.iat = time.Now()
	}
	if p.jti == "" {
		p.jti = rand.Text()
	}
	claims := map[string]any{
		"htm": p.htm,
		"htu": p.htu,
		"jti": p.jti,
		"iat": p.iat.Unix(),
		"exp": p.iat.Add(30 * time.Second).Unix(),
	}
	if p.nonce != "-" {
		claims["nonce"] = p.nonce
	}
	if p.ath != "" {
		claims["ath"] = p.ath
	}
	delete(claims, p.noClaim)
	return signJWT(t, p.key, header, claims)
}

// rawResp is a response with its JSON body decoded.
type rawResp struct {
	status int
	header http.Header
	body   map[string]any
}

func (r rawResp) errCode() string {
	s, _ := r.body["error"].(string)
	return s
}

func (r rawResp) str(k string) string {
	s, _ := r.body[k].(string)
	return s
}

func do(t *testing.T, c *http.Client, req *http.Request) rawResp {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := rawResp{status: resp.StatusCode, header: resp.Header}
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &out.body); err != nil {
			t.Fatalf("decoding %s: %v", b, err)
		}
	}
	return out
}

// postForm posts a form to https://pds.test<path> with an optional DPoP proof.
func postForm(t *testing.T, srv *ginoauthtest.Server, path string, form url.Values, dpop string) rawResp {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.Issuer()+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if dpop != "" {
		req.Header.Set("DPoP", dpop)
	}
	return do(t, srv.HTTPClient(), req)
}

// rawFlow is a hand-driven public-client flow, for negative tests.
type rawFlow struct {
	t          *testing.T
	srv        *ginoauthtest.Server
	key        *atcrypto.PrivateKeyP256
	clientID   string
	redirect   string
	scope      string // requested at PAR
	verifier   string
	state      string
	requestURI string
	code       string
}

func newRawFlow(t *testing.T, srv *ginoauthtest.Server) *rawFlow {
	return newScopedFlow(t, srv, "atproto", "transition:generic")
}

// newScopedFlow is newRawFlow for a loopback client that declares scopes
// in its client_id and requests all of them.
func newScopedFlow(t *testing.T, srv *ginoauthtest.Server, scopes ...string) *rawFlow {
	cfg := oauth.NewLocalhostConfig(callbackURL, scopes)
	return &rawFlow{
		t:        t,
		srv:      srv,
		key:      newKey(t),
		clientID: cfg.ClientID,
		redirect: callbackURL,
		scope:    strings.Join(scopes, " "),
		verifier: rand.Text() + rand.Text(),
		state:    rand.Text(),
	}
}

func (f *rawFlow) parForm() url.Values {
	return url.Values{
		"client_id":             {f.clientID},
		"redirect_uri":          {f.redirect},
		"response_type":         {"code"},
		"scope":                 {f.scope},
		"state":                 {f.state},
		"code_challenge":        {oauth.S256CodeChallenge(f.verifier)},
		"code_challenge_method": {"S256"},
	}
}

func (f *rawFlow) proof(path string) string {
	return makeProof(f.t, proof{key: f.key, htm: "POST", htu: f.srv.Issuer() + path, nonce: f.srv.DPoPNonce()})
}

// par sends a valid PAR and keeps the request_uri.
func (f *rawFlow) par() {
	f.t.Helper()
	r := postForm(f.t, f.srv, "/oauth/par", f.parForm(), f.proof("/oauth/par"))
	if r.status != http.StatusCreated {
		f.t.Fatalf("PAR: %d %v", r.status, r.body)
	}
	f.requestURI = r.str("request_uri")
}

func (f *rawFlow) authorizeURL() string {
	return f.srv.Issuer() + "/oauth/authorize?" + url.Values{"client_id": {f.clientID}, "request_uri": {f.requestURI}}.Encode()
}

// approve sends a valid PAR and approves it for account; it keeps the code.
func (f *rawFlow) approve(account string) {
	f.t.Helper()
	f.par()
	redirect, err := f.srv.Consent(context.Background(), f.authorizeURL(), account, true)
	if err != nil {
		f.t.Fatal(err)
	}
	q := mustQuery(f.t, redirect)
	f.code = q.Get("code")
	if f.code == "" {
		f.t.Fatalf("no code in %s", redirect)
	}
}

func (f *rawFlow) tokenForm() url.Values {
	return url.Values{
		"grant_type":    {"authorization_code"},
		"client_id":     {f.clientID},
		"redirect_uri":  {f.redirect},
		"code":          {f.code},
		"code_verifier": {f.verifier},
	}
}

// tokens completes the flow and returns the token response.
func (f *rawFlow) tokens() rawResp {
	f.t.Helper()
	r := postForm(f.t, f.srv, "/oauth/token", f.tokenForm(), f.proof("/oauth/token"))
	if r.status != http.StatusOK {
		f.t.Fatalf("token: %d %v", r.status, r.body)
	}
	return r
}

// refresh sends a refresh_token grant with the flow's key and returns the
// answer, whatever it is.
func (f *rawFlow) refresh(refreshToken string) rawResp {
	f.t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {f.clientID}, "refresh_token": {refreshToken}}
	return postForm(f.t, f.srv, "/oauth/token", form, f.proof("/oauth/token"))
}

// pdsGet calls GET https://<host>/xrpc/<nsid> with the given Authorization
// and DPoP headers.
func pdsGet(t *testing.T, srv *ginoauthtest.Server, nsid, authz, dpop string) rawResp {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.Issuer()+"/xrpc/"+nsid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if dpop != "" {
		req.Header.Set("DPoP", dpop)
	}
	return do(t, srv.HTTPClient(), req)
}

// browser is a plain HTTP client for the consent page on the loopback URL,
// which does not follow redirects.
func browser() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
