package ginoauthtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
)

// clientInfo is a resolved OAuth client.
type clientInfo struct {
	id           string
	name         string // for the consent page
	localhost    bool
	confidential bool
	redirectURIs []string
	scopes       []string // declared scope values
	grantTypes   []string
	keys         map[string]atcrypto.PublicKey // kid -> key (confidential clients)
}

// RegisterClient makes a client metadata document known to the server, so
// that an https client_id resolves without fetching anything. The document is
// checked with indigo's ClientMetadata.Validate, and a confidential client
// (token_endpoint_auth_method private_key_jwt) must carry its public keys
// inline in JWKS, each with a kid.
//
// For indigo's client: md := config.ClientMetadata(); jwks :=
// config.PublicJWKS(); md.JWKS = &jwks; srv.RegisterClient(md).
//
// Registering a client again replaces its document, as a changed document
// at its client_id URL would: its sessions whose key is no longer in the
// new jwks are ended (see [Server.RefreshClientMetadata]).
func (s *Server) RegisterClient(md oauth.ClientMetadata) error {
	ci, err := clientFromMetadata(md.ClientID, &md, nil)
	if err != nil {
		return err
	}
	cp := md
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[md.ClientID] = &cp
	s.endSessionsWithoutKeyLocked(ci)
	return nil
}

// RegisterClientJSON is [Server.RegisterClient] for a raw JSON client
// metadata document, as a client would serve it.
func (s *Server) RegisterClientJSON(doc []byte) error {
	md, err := decodeClientMetadata(doc)
	if err != nil {
		return err
	}
	return s.RegisterClient(*md)
}

// SetClientMetadataClient lets the server fetch the metadata documents of
// https client_ids that were not registered with [Server.RegisterClient],
// using c (for example this server's own [Server.HTTPClient] after
// [Server.Route] points the client's origin at your app). Redirects are not
// followed, and the answer must be 200 with the document whose client_id is
// exactly the URL fetched. A nil c turns fetching off (the default).
func (s *Server) SetClientMetadataClient(c *http.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.metaClient = c
}

// resolveClient resolves a client_id: the loopback development client
// (http://localhost?...), a registered document, or a fetched one. A
// fetched document is the client's metadata as of now: the sessions whose
// key has left it are ended.
func (s *Server) resolveClient(ctx context.Context, clientID string) (*clientInfo, error) {
	ci, fetched, err := s.readClient(ctx, clientID)
	if err == nil && fetched {
		s.mu.Lock()
		s.endSessionsWithoutKeyLocked(ci)
		s.mu.Unlock()
	}
	return ci, err
}

// readClient is resolveClient without the effect on sessions; fetched
// reports whether the document was fetched.
func (s *Server) readClient(ctx context.Context, clientID string) (ci *clientInfo, fetched bool, err error) {
	if clientID == "" {
		return nil, false, errors.New("client_id is required")
	}
	u, err := url.Parse(clientID)
	if err != nil {
		return nil, false, errors.New("client_id is not a URL")
	}
	if u.Scheme == "http" && u.Host == "localhost" {
		ci, err := localhostClient(clientID, u)
		return ci, false, err
	}
	if u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.Fragment != "" {
		return nil, false, errors.New("client_id must be an https URL (or http://localhost for development)")
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil {
		return nil, false, errors.New("client_id must not be an IP address")
	}

	s.mu.Lock()
	md := s.clients[clientID]
	fetcher := s.metaClient
	s.mu.Unlock()
	if md != nil {
		ci, err := clientFromMetadata(clientID, md, nil)
		return ci, false, err
	}
	if fetcher == nil {
		return nil, false, fmt.Errorf("unknown client_id %s (register its metadata with RegisterClient, or enable fetching with SetClientMetadataClient)", clientID)
	}
	body, err := fetchJSON(ctx, fetcher, clientID)
	if err != nil {
		return nil, false, fmt.Errorf("fetching client metadata: %w", err)
	}
	md, err = decodeClientMetadata(body)
	if err != nil {
		return nil, false, err
	}
	ci, err = clientFromMetadata(clientID, md, fetcher)
	return ci, err == nil, err
}

// localhostClient implements the AT Protocol loopback development client:
// client_id http://localhost (no port, no path), with redirect_uri (any
// number) and scope in its query. Redirect URIs must be http on 127.0.0.1
// or [::1]; without any, http://127.0.0.1/ and http://[::1]/ apply. The
// scope defaults to "atproto". Such a client is always public.
func localhostClient(clientID string, u *url.URL) (*clientInfo, error) {
	if u.Port() != "" || (u.Path != "" && u.Path != "/") || u.Fragment != "" || u.User != nil {
		return nil, errors.New("a loopback client_id must be http://localhost with no port, path or fragment")
	}
	q := u.Query()
	redirects := q["redirect_uri"]
	for _, r := range redirects {
		ru, err := url.Parse(r)
		if err != nil || ru.Scheme != "http" || (ru.Hostname() != "127.0.0.1" && ru.Hostname() != "::1") {
			return nil, fmt.Errorf("loopback client redirect_uri %q must be http://127.0.0.1 or http://[::1]", r)
		}
	}
	if len(redirects) == 0 {
		redirects = []string{"http://127.0.0.1/", "http://[::1]/"}
	}
	scope := "atproto"
	if len(q["scope"]) > 1 {
		return nil, errors.New("loopback client_id has more than one scope parameter")
	}
	if q.Has("scope") {
		scope = q.Get("scope")
	}
	scopes := strings.Fields(scope)
	if !slices.Contains(scopes, "atproto") {
		return nil, errors.New("loopback client scope must include atproto")
	}
	return &clientInfo{
		id:           clientID,
		name:         "Local development client",
		localhost:    true,
		redirectURIs: redirects,
		scopes:       scopes,
		grantTypes:   []string{"authorization_code", "refresh_token"},
	}, nil
}

func decodeClientMetadata(doc []byte) (*oauth.ClientMetadata, error) {
	if !isJSONObject(doc) {
		return nil, errors.New("client metadata is not a JSON object")
	}
	// Public keys only: refuse any private member before decoding drops it.
	var raw struct {
		JWKS *struct {
			Keys []map[string]json.RawMessage `json:"keys"`
		} `json:"jwks"`
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, fmt.Errorf("client metadata: %v", err)
	}
	if raw.JWKS != nil {
		for _, k := range raw.JWKS.Keys {
			if _, ok := k["d"]; ok {
				return nil, errors.New("client metadata jwks contains a private key")
			}
		}
	}
	var md oauth.ClientMetadata
	if err := json.Unmarshal(doc, &md); err != nil {
		return nil, fmt.Errorf("client metadata: %v", err)
	}
	return &md, nil
}

// clientFromMetadata validates a document for clientID. fetcher, when not
// nil, is used for jwks_uri.
func clientFromMetadata(clientID string, md *oauth.ClientMetadata, fetcher *http.Client) (*clientInfo, error) {
	if err := md.Validate(clientID); err != nil {
		return nil, err
	}
	u, err := url.Parse(clientID)
	if err != nil || u.Scheme != "https" {
		return nil, errors.New("client_id of a metadata document must be an https URL")
	}
	ci := &clientInfo{
		id:           clientID,
		name:         u.Hostname(),
		redirectURIs: md.RedirectURIs,
		scopes:       strings.Fields(md.Scope),
		grantTypes:   md.GrantTypes,
	}
	if md.ClientName != nil && *md.ClientName != "" {
		ci.name = *md.ClientName
	}
	switch md.TokenEndpointAuthMethod {
	case "none":
		return ci, nil
	case "private_key_jwt":
	default:
		return nil, fmt.Errorf("unsupported token_endpoint_auth_method %q", md.TokenEndpointAuthMethod)
	}
	ci.confidential = true
	if md.TokenEndpointAuthSigningAlg != nil && *md.TokenEndpointAuthSigningAlg != "ES256" {
		return nil, errors.New("token_endpoint_auth_signing_alg must be ES256")
	}
	var keys []atcrypto.JWK
	switch {
	case md.JWKS != nil && md.JWKSURI != nil:
		return nil, errors.New("client metadata must not have both jwks and jwks_uri")
	case md.JWKS != nil:
		keys = md.JWKS.Keys
	case md.JWKSURI != nil && fetcher != nil:
		body, err := fetchJSON(context.Background(), fetcher, *md.JWKSURI)
		if err != nil {
			return nil, fmt.Errorf("fetching jwks_uri: %w", err)
		}
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(body, &set); err != nil {
			return nil, fmt.Errorf("jwks_uri document: %v", err)
		}
		for _, raw := range set.Keys {
			if _, err := parsePublicJWK(raw); err != nil {
				return nil, fmt.Errorf("jwks_uri key: %v", err)
			}
			var k atcrypto.JWK
			_ = json.Unmarshal(raw, &k)
			keys = append(keys, k)
		}
	default:
		return nil, errors.New("a confidential client needs jwks in its metadata (jwks_uri only when fetching is enabled)")
	}
	ci.keys = map[string]atcrypto.PublicKey{}
	for _, k := range keys {
		if k.KeyID == nil || *k.KeyID == "" {
			return nil, errors.New("every client jwks key needs a kid")
		}
		if k.KeyType != "EC" || k.Curve != "P-256" {
			continue // not usable for ES256; ignore like other servers do
		}
		pub, err := atcrypto.ParsePublicJWK(k)
		if err != nil {
			return nil, fmt.Errorf("client jwks key %s: %v", *k.KeyID, err)
		}
		ci.keys[*k.KeyID] = pub
	}
	if len(ci.keys) == 0 {
		return nil, errors.New("a confidential client needs at least one P-256 key in its jwks")
	}
	return ci, nil
}

func fetchJSON(ctx context.Context, c *http.Client, u string) ([]byte, error) {
	nc := *c
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := nc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d (want 200, redirects are not followed)", resp.StatusCode)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<10))
}

// redirectAllowed reports whether redirectURI is one the client registered.
// Comparison is exact, except that for http loopback IP redirect URIs the
// port is ignored (RFC 8252, section 7.3).
func (ci *clientInfo) redirectAllowed(redirectURI string) bool {
	if slices.Contains(ci.redirectURIs, redirectURI) {
		return true
	}
	ru, err := url.Parse(redirectURI)
	if err != nil || ru.Scheme != "http" || !isLoopbackIP(ru.Hostname()) {
		return false
	}
	for _, reg := range ci.redirectURIs {
		gu, err := url.Parse(reg)
		if err != nil || gu.Scheme != "http" || gu.Hostname() != ru.Hostname() {
			continue
		}
		if normPath(gu.Path) == normPath(ru.Path) && gu.RawQuery == ru.RawQuery && ru.Fragment == "" && ru.User == nil {
			return true
		}
	}
	return false
}

func normPath(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

func isLoopbackIP(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// checkScope checks a requested scope: present, includes atproto, and every
// value declared by the client.
func (ci *clientInfo) checkScope(scope string) error {
	req := strings.Fields(scope)
	if len(req) == 0 {
		return errors.New("scope is required")
	}
	if !slices.Contains(req, "atproto") {
		return errors.New("scope must include atproto")
	}
	for _, v := range req {
		if !slices.Contains(ci.scopes, v) {
			return fmt.Errorf("scope %q was not declared by the client", v)
		}
	}
	return nil
}

// authenticateClient checks client authentication on a request to the PAR,
// token or revocation endpoint. Public clients must not authenticate (empty
// values, which indigo sends for public clients, count as absent);
// confidential clients must send a valid private_key_jwt assertion: ES256,
// a kid from the client's jwks, iss = sub = client_id, aud = the issuer,
// exp in the future, iat fresh, and a jti never used before. It returns the
// key that authenticated the request (nothing for a public client), which a
// session is bound to (see client_keys.go).
func (s *Server) authenticateClient(ci *clientInfo, form url.Values) (clientAuth, *oauthError) {
	typ, assertion := form.Get("client_assertion_type"), form.Get("client_assertion")
	if !ci.confidential {
		if typ != "" || assertion != "" {
			return clientAuth{}, invalidClient("client authentication is not allowed for a public client (token_endpoint_auth_method none)")
		}
		return clientAuth{}, nil
	}
	if typ != oauth.ClientAssertionJWTBearer {
		return clientAuth{}, invalidClient("confidential client must authenticate with client_assertion_type " + oauth.ClientAssertionJWTBearer)
	}
	if assertion == "" {
		return clientAuth{}, invalidClient("client_assertion is required for a confidential client")
	}
	p, err := parseJWS(assertion)
	if err != nil {
		return clientAuth{}, invalidClient("malformed client assertion: " + err.Error())
	}
	if p.header.Typ == "dpop+jwt" {
		return clientAuth{}, invalidClient("client assertion must not be a DPoP proof")
	}
	if len(p.header.JWK) > 0 {
		return clientAuth{}, invalidClient("client assertion must not embed its key")
	}
	key, ok := ci.keys[p.header.Kid]
	if p.header.Kid == "" || !ok {
		return clientAuth{}, invalidClient("client assertion kid is missing or not in the client's jwks")
	}
	if err := p.verifyES256(key); err != nil {
		return clientAuth{}, invalidClient("client assertion: " + err.Error())
	}
	c := &p.claims
	if c.Iss != ci.id || c.Sub != ci.id {
		return clientAuth{}, invalidClient("client assertion iss and sub must be the client_id")
	}
	if !slices.Contains([]string(c.Aud), s.issuer) {
		return clientAuth{}, invalidClient("client assertion aud must be the issuer " + s.issuer)
	}
	wall := time.Now()
	if c.Exp == nil || !wall.Before(c.Exp.time()) {
		return clientAuth{}, invalidClient("client assertion expired or without exp")
	}
	if c.Iat == nil {
		return clientAuth{}, invalidClient("client assertion iat missing")
	}
	iat := c.Iat.time()
	if iat.Before(wall.Add(-assertionMaxAge)) || iat.After(wall.Add(proofMaxFuture)) {
		return clientAuth{}, invalidClient("client assertion iat is not fresh")
	}
	if c.Nbf != nil && wall.Add(proofMaxFuture).Before(c.Nbf.time()) {
		return clientAuth{}, invalidClient("client assertion not valid yet (nbf)")
	}
	if c.Jti == "" {
		return clientAuth{}, invalidClient("client assertion jti missing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := ci.id + " " + c.Jti
	if _, seen := s.assertJTIs[k]; seen {
		return clientAuth{}, invalidClient("client assertion replayed (jti already used)")
	}
	forget := c.Exp.time()
	if min := wall.Add(assertionMaxAge + proofMaxFuture); forget.Before(min) {
		forget = min
	}
	s.assertJTIs[k] = forget.Add(time.Minute)
	return clientAuth{kid: p.header.Kid, alg: p.header.Alg, jkt: jwkThumbprint(key)}, nil
}
