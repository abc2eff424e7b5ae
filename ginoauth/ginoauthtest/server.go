package ginoauthtest

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Default lifetimes. They follow the reference PDS (@atproto/pds) where it
// has a documented value.
const (
	// DefaultAccessTokenLifetime is how long an access token is valid.
	DefaultAccessTokenLifetime = 60 * time.Minute
	// DefaultPublicSessionLifetime caps a public client's session (the
	// whole chain of refreshed tokens): two weeks.
	DefaultPublicSessionLifetime = 14 * 24 * time.Hour
	// DefaultConfidentialSessionLifetime caps a confidential client's
	// session: two years.
	DefaultConfidentialSessionLifetime = 2 * 365 * 24 * time.Hour
	// DefaultConfidentialRefreshInactivity is how long a confidential
	// client's refresh token stays valid without being used: three months.
	DefaultConfidentialRefreshInactivity = 90 * 24 * time.Hour
	// DefaultNonceRotation is how often the server's DPoP nonce changes. The
	// previous nonce stays valid for one more period.
	DefaultNonceRotation = 3 * time.Minute
	// RequestLifetime is how long a request_uri from the PAR endpoint can
	// be used at the authorization endpoint.
	RequestLifetime = 5 * time.Minute
	// CodeLifetime is how long an authorization code can be exchanged.
	CodeLifetime = time.Minute
)

// The freshness window for the iat claim of DPoP proofs and client
// assertions, measured against the real wall clock (not [Server.Advance]):
// clients sign with the wall clock.
const (
	proofMaxAge     = 60 * time.Second
	proofMaxFuture  = 10 * time.Second
	assertionMaxAge = 5 * time.Minute
)

// Server is a local AT Protocol OAuth authorization server and PDS, for
// tests and offline development. See the package documentation.
//
// All methods are safe for concurrent use.
type Server struct {
	host   string // public host name, no port ("pds.test")
	issuer string // "https://" + host
	log    *slog.Logger
	secret []byte // HMAC key for CSRF tokens

	ts        *httptest.Server
	addr      string // listen address for Start (option)
	handler   http.Handler
	transport *http.Transport
	tid       *syntax.TIDClock
	dir       *directory
	lexDID    syntax.DID // did:web:<host>, the repo that holds published permission sets

	offset      atomic.Int64 // Advance, in nanoseconds
	autoApprove atomic.Bool

	mu          sync.Mutex
	baseURL     string // where the server really listens, "http://127.0.0.1:port"
	browserURL  string // base URL a browser uses for the consent page ("" = baseURL)
	routes      map[string]string
	metaClient  *http.Client
	clients     map[string]*oauth.ClientMetadata
	accounts    map[syntax.DID]*Account
	handles     map[syntax.Handle]syntax.DID
	accountList []syntax.DID
	requests    map[string]*parRequest
	codes       map[string]*authCode
	usedCodes   map[string]string // code -> id of the session it created ("" if none)
	sessions    map[string]*session
	sessionList []string
	access      map[string]*session   // current access token -> session
	refresh     map[string]*refreshRT // every refresh token ever issued
	tokens      map[string]string     // every token ever issued -> session id
	proofJTIs   map[string]time.Time  // DPoP jti -> forget after
	assertJTIs  map[string]time.Time  // client_id + " " + jti -> forget after
	nonce       nonceState
	stats       Stats
	records     map[syntax.DID]map[string]map[string]*record
	lastSweep   time.Time
	requestLog  []AuthorizationRequestInfo      // every accepted PAR, oldest first
	permSets    map[syntax.NSID][]setPermission // published permission sets
	denied      map[string]bool                 // DenyScopes
	pdsHosts    map[string]bool                 // AddPDSHost
	pdsCalls    map[string]int                  // authenticated XRPC requests by host

	accessLifetime       time.Duration
	publicLifetime       time.Duration
	confidentialLifetime time.Duration
	confidentialRTLife   time.Duration
	nonceRotation        time.Duration
}

// Options configure a [Server]. The zero value is what most tests want.
type Options struct {
	// Host is the server's public host name (default "pds.test"). The
	// issuer becomes https://<host>, and that is also the PDS URL in the
	// accounts' DID documents. It must be a bare host name: no scheme, no
	// port.
	Host string
	// Logger receives the server's logs (default: nothing is logged).
	// Tokens, codes, DPoP keys and CSRF tokens are never logged.
	Logger *slog.Logger
	// AutoApprove starts the server in auto-approve mode; see
	// [Server.SetAutoApprove].
	AutoApprove bool
	// AccessTokenLifetime is the lifetime of access tokens (default
	// [DefaultAccessTokenLifetime]); see also [Server.SetAccessTokenLifetime].
	AccessTokenLifetime time.Duration
	// PublicSessionLifetime and ConfidentialSessionLifetime cap a session,
	// from the authorization to the last possible refresh (defaults
	// [DefaultPublicSessionLifetime] and [DefaultConfidentialSessionLifetime]).
	PublicSessionLifetime, ConfidentialSessionLifetime time.Duration
	// NonceRotation is how often the DPoP nonce changes (default
	// [DefaultNonceRotation]); a nonce is accepted for one more period
	// after it is replaced. Rotation is computed from the server clock when
	// a request arrives; there is no timer goroutine.
	NonceRotation time.Duration
	// Addr makes [Server.Start] listen on addr (for example
	// "127.0.0.1:2583") instead of a random loopback port. Start panics if
	// it cannot listen; use [Server.StartListener] to handle the error.
	Addr string
	// BrowserURL is the base URL under which a real browser reaches this
	// server's handler (default: the address it listens on, [Server.URL]),
	// for [Server.RewriteForBrowser]. Set it when you serve [Server.Handler]
	// behind your own listener or proxy.
	BrowserURL string
}

// NewUnstartedServer returns a server that is configured but not yet
// listening. Call [Server.Start] or [Server.StartListener] before using its
// [Server.HTTPClient]; accounts and clients can be set up before that.
func NewUnstartedServer(opts Options) *Server {
	s := &Server{
		host:                 "pds.test",
		log:                  slog.New(slog.DiscardHandler),
		secret:               randomBytes(32),
		tid:                  syntax.NewTIDClock(0),
		routes:               map[string]string{},
		clients:              map[string]*oauth.ClientMetadata{},
		accounts:             map[syntax.DID]*Account{},
		handles:              map[syntax.Handle]syntax.DID{},
		requests:             map[string]*parRequest{},
		codes:                map[string]*authCode{},
		usedCodes:            map[string]string{},
		sessions:             map[string]*session{},
		access:               map[string]*session{},
		refresh:              map[string]*refreshRT{},
		tokens:               map[string]string{},
		proofJTIs:            map[string]time.Time{},
		assertJTIs:           map[string]time.Time{},
		records:              map[syntax.DID]map[string]map[string]*record{},
		permSets:             map[syntax.NSID][]setPermission{},
		denied:               map[string]bool{},
		pdsHosts:             map[string]bool{},
		pdsCalls:             map[string]int{},
		accessLifetime:       DefaultAccessTokenLifetime,
		publicLifetime:       DefaultPublicSessionLifetime,
		confidentialLifetime: DefaultConfidentialSessionLifetime,
		confidentialRTLife:   DefaultConfidentialRefreshInactivity,
		nonceRotation:        DefaultNonceRotation,
	}
	if opts.Host != "" {
		s.host = strings.ToLower(opts.Host)
	}
	if opts.Logger != nil {
		s.log = opts.Logger
	}
	s.autoApprove.Store(opts.AutoApprove)
	setIf(&s.accessLifetime, opts.AccessTokenLifetime)
	setIf(&s.publicLifetime, opts.PublicSessionLifetime)
	setIf(&s.confidentialLifetime, opts.ConfidentialSessionLifetime)
	setIf(&s.nonceRotation, opts.NonceRotation)
	s.addr = opts.Addr
	s.browserURL = strings.TrimRight(opts.BrowserURL, "/")
	if strings.ContainsAny(s.host, ":/?#@ ") {
		panic(fmt.Sprintf("ginoauthtest: Options.Host %q: want a bare host name such as pds.test", s.host))
	}
	s.issuer = "https://" + s.host
	s.lexDID = syntax.DID("did:web:" + s.host)
	s.dir = &directory{s: s}
	s.transport = &http.Transport{
		Proxy:               nil, // never send test traffic to a proxy from the environment
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
	s.handler = s.newMux()
	s.ts = &httptest.Server{Config: &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}}
	return s
}

func setIf(field *time.Duration, d time.Duration) {
	if d > 0 {
		*field = d
	}
}

// NewServer starts and returns a new server on a loopback port (or on
// Options.Addr). The caller must Close it.
func NewServer(opts Options) *Server {
	s := NewUnstartedServer(opts)
	s.Start()
	return s
}

// New is [NewServer] for tests: it registers Close with t.Cleanup.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s := NewServer(opts)
	t.Cleanup(s.Close)
	return s
}

// Start starts listening on a random loopback port, or on Options.Addr. It panics if it cannot listen, like httptest.Server.
func (s *Server) Start() {
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil && s.addr == "" {
		l, err = lc.Listen(context.Background(), "tcp6", "[::1]:0")
	}
	if err != nil {
		panic(fmt.Sprintf("ginoauthtest: failed to listen on %s: %v", addr, err))
	}
	s.StartListener(l)
}

// StartListener starts serving on l, which the server then owns (Close
// closes it). Use it to choose the address and handle listen errors.
func (s *Server) StartListener(l net.Listener) {
	s.mu.Lock()
	if s.baseURL != "" {
		s.mu.Unlock()
		panic("ginoauthtest: server already started")
	}
	s.ts.Listener = l
	s.baseURL = "http://" + l.Addr().String()
	s.mu.Unlock()
	s.ts.Start()
	s.log.Info("ginoauthtest server started", "issuer", s.issuer, "listen", l.Addr().String())
}

// Close shuts the server down, blocking until all outstanding requests on
// it have completed.
func (s *Server) Close() {
	s.mu.Lock()
	started := s.baseURL != ""
	s.mu.Unlock()
	if started {
		s.ts.Close()
	}
	s.transport.CloseIdleConnections()
}

// Host is the public host name, for example "pds.test".
func (s *Server) Host() string { return s.host }

// Issuer is the public URL of the server in both roles, "https://<host>":
// the OAuth issuer, the iss value in authorization responses, and the PDS
// service endpoint of every account.
func (s *Server) Issuer() string { return s.issuer }

// URL is the loopback base URL the server really listens on, for example
// "http://127.0.0.1:38421", or "" before it is started. Clients do not use
// it directly: they use [Server.HTTPClient] with https://<host> URLs.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// Handler is the server's HTTP handler (both roles). The server serves it
// itself once started; it is exposed for embedding and for driving with
// httptest.NewRecorder. Requests are handled the same whatever their Host
// header: the public identity is always https://<host>.
func (s *Server) Handler() http.Handler { return s.handler }

// RewriteForBrowser maps a URL on the server's public origin
// (https://<host>/...) to the address a real browser can open: the
// Options.BrowserURL base, or [Server.URL]. Any other URL is returned
// unchanged. Use it on the authorization URL an OAuth client returns, before
// redirecting a browser to it; everything the client itself sends keeps
// using https://<host>.
func (s *Server) RewriteForBrowser(u string) string {
	s.mu.Lock()
	base := s.browserURL
	if base == "" {
		base = s.baseURL
	}
	s.mu.Unlock()
	if base == "" {
		return u
	}
	if u == s.issuer {
		return base + "/"
	}
	for _, sep := range []string{"/", "?", "#"} {
		if strings.HasPrefix(u, s.issuer+sep) {
			rest := strings.TrimPrefix(u, s.issuer)
			if sep != "/" {
				rest = "/" + rest
			}
			return base + rest
		}
	}
	return u
}

// SetAutoApprove turns auto-approve mode on or off. In this mode the
// authorization endpoint does not show the consent page: it approves at once
// for the account named by the request's login_hint (or, without a usable
// hint, the only account if exactly one exists) and redirects straight back
// to the client. Without such an account the page is shown as usual. For a
// sign-up request (prompt=create) only login_hint counts: that account is
// created if it does not exist, then approved for. A prompt=none request is
// approved the same way, standing for a user who is signed in and has
// consented; outside this mode it gets error=login_required.
func (s *Server) SetAutoApprove(on bool) { s.autoApprove.Store(on) }

// SetAccessTokenLifetime changes the lifetime of access tokens issued from
// now on. Tokens already issued keep their expiry; see
// [Server.ExpireAccessTokens].
func (s *Server) SetAccessTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accessLifetime = d
}

// Advance moves the server clock forward by d. The server clock decides the
// expiry of request URIs, authorization codes, access and refresh tokens and
// sessions, and nonce rotation; it lets a test expire them without
// sleeping. The freshness of DPoP proofs and client assertions is checked
// against the real wall clock, because clients sign with it.
func (s *Server) Advance(d time.Duration) {
	if d < 0 {
		panic("ginoauthtest: Advance with a negative duration")
	}
	s.offset.Add(int64(d))
}

func (s *Server) now() time.Time {
	return time.Now().Add(time.Duration(s.offset.Load()))
}

// csrfToken is tied to one request_uri: an HMAC of it under the server's
// random key. Only the consent page shows it.
func (s *Server) csrfToken(requestURI string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("consent\x00" + requestURI))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return b
}

func randomToken() string { return base64.RawURLEncoding.EncodeToString(randomBytes(32)) }

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// shortID identifies something secret in logs without revealing it.
func shortID(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return base64.RawURLEncoding.EncodeToString(h[:6])
}
