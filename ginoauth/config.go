package ginoauth

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// Config configures a Manager. OAuthClient, Storage, CookieSecret and BaseURL
// are required; everything else has a default chosen for a public web app.
type Config struct {
	// OAuthClient runs the protocol. Use indigoclient.New for indigo's client.
	OAuthClient oauthclient.Client
	// Storage keeps flow records and session records: any storage.Store
	// (stores/sqlitestore, stores/postgresstore, stores/redisstore,
	// stores/memstore, or your own). It may be (and usually is) the same
	// storage the OAuth client keeps its tokens in.
	Storage storage.Store

	// CookieSecret seals cookies; at least 32 bytes of randomness. Required.
	CookieSecret string
	// OldCookieSecrets still open cookies sealed before a rotation. Remove
	// one once the longest login (see SessionTTL) has passed since it
	// stopped being CookieSecret.
	OldCookieSecrets []string

	// BaseURL is the app's public origin, e.g. "https://myapp.example".
	// https makes cookies Secure; plain http is accepted only for loopback
	// hosts (localhost, 127.0.0.1, [::1]) during development.
	BaseURL string

	// CookieName is the session cookie's name. Default "__Host-sid" for an
	// https BaseURL without CookieDomain (the prefix makes browsers refuse
	// the cookie from anything but this exact host, over https, for path
	// /: a sibling subdomain cannot plant one), else "sid" (plain http
	// development, or a shared CookieDomain). The flow cookie of a login
	// is named CookieName + "_flow", with the __Host- prefix on https
	// whatever CookieName is ("__Host-sid_flow"), and is never shared.
	CookieName string
	// CookieDomain sets the session cookie's Domain attribute. Default
	// none, which keeps the cookie on the exact host (the safer choice).
	// With it, every host under the domain is trusted with the session: any
	// of them can set a session cookie of its own for the whole domain (a
	// session of the attacker's, to log visitors in as someone else, or one
	// replacing theirs). Two valid session cookies in one request are
	// refused (neither is used), but one that replaces the real cookie
	// cannot be told apart. Set it only when every host under the domain is
	// yours.
	CookieDomain string

	// AllowedOrigins are origins besides BaseURL's (for example
	// "https://www.myapp.example") whose pages may send the prebuilt
	// state-changing routes, and routes behind RequireSameOrigin, a
	// request. Requests that the browser marks as coming from any other
	// site are refused (see RequireSameOrigin).
	AllowedOrigins []string

	// LocalDomains are names outside the public DNS that logins may still
	// name, for development and tests: a local authorization server such
	// as ginoauthtest's pds.test and its accounts (alice.test). Each entry
	// is a lower-case domain and allows itself and every name under it
	// ("test" allows all of .test). Without an entry, a handle, did:web or
	// server= naming an IP address, a single label, or a name under a
	// reserved or private-network suffix (.local, .internal, .localhost,
	// .home.arpa, .lan, .corp, .test, .onion, ...) is refused with 400
	// before any network call, whatever HTTP client the OAuth client uses.
	// Default none.
	LocalDomains []string

	// SessionTTL, when set, ends a login after this long without use: each
	// use extends it (at most one storage write per session an hour). A
	// login never outlives MaxSessionAge or its grant. Default 0: a login
	// lasts as long as its grant does (the reference server: a public
	// client's grant two weeks from the login, however active the user; a
	// confidential client's three months after its last token refresh, up
	// to two years). Enforced server side; the cookie's Max-Age follows the
	// session. Extending needs a Storage with storage.Swapper (every
	// shipped store has it); without one a login ends at its first expiry.
	SessionTTL time.Duration
	// MaxSessionAge caps a login from its start however active the user
	// is. Default 0: as long as its grant allows (the reference server: a
	// public client's grant ends two weeks after the login; a confidential
	// client's lives up to two years if refreshed at least every three
	// months), or 14 days when the OAuth client cannot tell (no
	// oauthclient.GrantLimiter) and for authentication-only logins.
	MaxSessionAge time.Duration
	// BackgroundAccess keeps each account's newest grant for
	// OAuthSessionForAccount after the account's last device session has
	// ended, on the grant's own lifetime: background jobs keep working
	// while the user is away. It ends with EndAllSessions, a refused
	// refresh, a newer login's grant, or its own limit. Default off: a
	// grant lives only as long as its device session.
	BackgroundAccess bool
	// KeepAlive refreshes confidential clients' grants (of live device
	// sessions, and kept for BackgroundAccess) in the background, before
	// their refresh token would die unused: exactly once across instances,
	// in batches, from two weeks ahead. It keeps grants alive for users who
	// are not using the app; off by default. Needs an OAuth client with
	// oauthclient.GrantLimiter and a Storage with storage.Indexer.
	KeepAlive bool
	// IdentityCheckInterval is how often, at most, a logged-in account's
	// identity is checked again in the background, when the OAuth client
	// can (oauthclient.IdentityChecker; indigoclient's can) and the Storage
	// has storage.Indexer: its handle verified both ways, its PDS, its
	// status there. Checks run when a session of the account is used (at
	// most once per interval across instances), after each token refresh,
	// and when the PDS answers that the account is deactivated, taken
	// down or gone; never on the request path. A changed handle is
	// followed (handle.invalid when it no longer verifies), a move to
	// another PDS of the same authorization server too; any other move,
	// a takedown, a deletion and (unless KeepDeactivatedSessions) a
	// deactivation end the account's sessions (EndAccountMoved,
	// EndAccountTakenDown, EndAccountDeleted, EndAccountDeactivated).
	// Default 1 hour; at least 1 minute; negative turns the checks off.
	IdentityCheckInterval time.Duration
	// KeepDeactivatedSessions keeps the sessions of an account found
	// deactivated (or suspended) instead of ending them: User.AccountStatus
	// says so, the app can offer reactivation, and they go on normally once
	// a later check finds the account active. Taken down, deleted and moved
	// accounts always end their sessions.
	KeepDeactivatedSessions bool
	// LivenessCheckEvery is how often the grant of each active device
	// session (one used within the last hour) is checked with its PDS in
	// the background, so that a grant the user revoked at their PDS ends
	// its sessions (EndRevokedAtServer) within about this long plus a
	// fifth, instead of when its access token expires (up to an hour on
	// the reference server). One authenticated call
	// (com.atproto.server.getSession) per active session per period,
	// across all instances (with a storage.Counter; per instance
	// without). Default 5 minutes: noticed within about six minutes, for
	// 12 PDS calls per active session an hour. At least a minute;
	// negative turns the check off (a refused refresh still ends the
	// session when the access token expires).
	LivenessCheckEvery time.Duration
	// ReturnToLogin sends a browser whose session ended for a reason a new
	// login fixes (the server revoked or refused the grant, the grant
	// expired) straight back through the login when it asks for a page
	// behind RequireAuth: a 303 to Routes.Login with the account's DID as
	// login_hint and the page as the return path. JSON clients (and
	// browsers without it) get 401 with the reason and that login URL.
	// Default off: the authorization server's sign-in page appearing
	// without a click surprises users, and an app must have mounted the
	// login route (Mount) for the redirect to lead anywhere.
	ReturnToLogin bool
	// IdleTimeout, when set, also ends a browser session after this long
	// without a request, to the minute (SessionTTL's extension is
	// coarse). Default 0: off. The time of the last request is
	// sealed in the session cookie, so it costs no storage access. Native
	// app sessions are bounded by Mobile.SessionTTL and their grant.
	IdleTimeout time.Duration
	// SessionCacheTTL, when set (at most 5 minutes), caches session records
	// in process, so that most session checks need no storage read. A
	// session ended on this instance (logout, ended from another device
	// through this instance, expiry found here) is dropped from the cache
	// at once; one ended on another instance sharing the store can still be
	// accepted here for up to SessionCacheTTL. Choose it as the longest
	// time a logout elsewhere may take to reach every instance. Default 0:
	// off.
	SessionCacheTTL time.Duration
	// SessionCacheMaxEntries bounds the cache; default 100,000 records (a
	// few hundred bytes each).
	SessionCacheMaxEntries int
	// FlowTTL bounds how long a user may take between /login and the
	// callback. Default 10 minutes.
	FlowTTL time.Duration
	// StorageTimeout bounds each storage operation, so that a stalled
	// database (one that neither answers nor refuses) turns into a quick
	// 503 instead of holding every request. Default 3 seconds.
	StorageTimeout time.Duration

	// AuthenticationOnly is for apps that only need to know who the user is:
	// logins (web and native apps) request the atproto scope alone, and the
	// tokens are revoked as soon as the callback has verified the account.
	// With an OAuth client that has the oauthclient.Authenticator
	// capability (indigoclient does), no token is ever written to storage;
	// with one that has not, the client stores them in Callback and they
	// are revoked and deleted right after. OAuthSession then fails with
	// ErrAuthenticationOnly.
	AuthenticationOnly bool

	// Mobile enables the native-app flow (off unless it names redirect
	// URIs); see MobileConfig.
	Mobile MobileConfig

	// RateLimits bound how often one client address may start logins and
	// reach the callback: on by default, at 30 starts and 60 callbacks a
	// minute. The address is c.ClientIP(), so behind a proxy call the
	// engine's SetTrustedProxies. See RateLimits.
	RateLimits RateLimits

	// MaxAccounts is how many accounts one browser may be logged in with
	// at once (an account switcher: see StartOptions.AddAccount and
	// Manager.Accounts). Default 5; at most 20; 1 turns adding off.
	MaxAccounts int
	// DescribeAccounts, if set, fills in the Name and Avatar of the
	// accounts Manager.Accounts and the session route list (from the
	// app's own profile cache, say): the library fetches no profiles. It
	// gets them all at once, the active one first, and must not keep the
	// slice.
	DescribeAccounts func(ctx context.Context, accounts []Account)

	// Routes are the paths Manager.Mount registers the prebuilt handlers on.
	Routes Routes

	// ErrorHandler, if set, writes the error responses of the prebuilt
	// handlers and the middleware, e.g. as HTML pages for form posts. The
	// response's Message is safe to show; Err is for logs only (it has
	// already been logged). Default: JSON {"error": Message, "code": Code},
	// and a small HTML page for browsers at the callback.
	ErrorHandler func(c *gin.Context, e ErrorResponse)

	// Now is the Manager's clock, for session expiry and cookie expiry.
	// Default time.Now; tests set it to move time forward.
	Now func() time.Time

	// OnEvent, if set, receives lifecycle events (logins, logouts, sessions
	// ended and why) for audit logs and app logic. It runs on a goroutine
	// of its own, one event at a time; a slow hook loses events (logged)
	// rather than slowing a login, and a panicking one is recovered. Events
	// never hold tokens or session ids.
	OnEvent func(Event)
	// Metrics, if set, receives measurements (logins, session checks,
	// storage failures); ginoauth/prommetrics wires them to Prometheus.
	Metrics Metrics
	// RecordIP keeps each session's client IP at login (c.ClientIP(), so
	// configure Gin's trusted proxies) for the device list. Default off:
	// no IP addresses are stored.
	RecordIP bool

	// Logger receives the library's logs. Default: discard; the library is
	// silent unless given a logger. Logs never contain tokens, keys or raw
	// session ids.
	Logger *slog.Logger
}

// Routes are the paths of the prebuilt handlers; empty fields get defaults.
// The callback path must match the redirect URI the OAuth client registers.
type Routes struct {
	Login    string // GET and POST; default "/login"
	Callback string // default "/oauth/callback"
	Session  string // default "/api/session"
	Logout   string // POST only, ends every account of the browser; default "/api/logout"
	// The account switcher (several accounts in one browser).
	SwitchAccount string // POST {"did"}; default "/api/accounts/switch"
	LogoutAccount string // POST, ends the active account only; default "/api/accounts/logout"
	Upgrade       string // GET and POST, step-up; default "/login/upgrade"

	MobileStart         string // GET and POST; default "/api/auth/mobile-start"
	MobileToken         string // POST; default "/api/auth/mobile-token"
	MobileRefresh       string // POST; default "/api/auth/mobile-refresh"
	MobileRefreshLegacy string // GET, the Deno library's route; default "/mobile/refresh-token"

	// The current user's devices; mounted when the Storage has a
	// storage.Indexer.
	Sessions         string // GET; default "/api/sessions"
	EndSession       string // POST {"ref"}; default "/api/sessions/end"
	EndOtherSessions string // POST; default "/api/sessions/end-others"
	EndAllSessions   string // POST; default "/api/sessions/end-all"
	ClientMetadata   string // default "/oauth-client-metadata.json"
	JWKS             string // default "/oauth/jwks.json"
}

// The defaults the Config documents.
const (
	defaultCookieName         = "sid"
	defaultMaxAccounts        = 5
	defaultFlowTTL            = 10 * time.Minute
	defaultStorageTimeout     = 3 * time.Second
	defaultMobileCodeTTL      = time.Minute
	defaultMobileRefreshGrace = time.Minute
	// minSecretLength is the shortest cookie secret accepted, in bytes.
	minSecretLength = 32
)

// withDefaults returns cfg with every empty optional field filled in.
func (cfg Config) withDefaults() Config {
	if cfg.CookieName == "" {
		cfg.CookieName = defaultCookieName
		if strings.HasPrefix(cfg.BaseURL, "https://") && cfg.CookieDomain == "" {
			cfg.CookieName = "__Host-" + defaultCookieName
		}
	}
	if cfg.FlowTTL == 0 {
		cfg.FlowTTL = defaultFlowTTL
	}
	if cfg.IdentityCheckInterval == 0 {
		cfg.IdentityCheckInterval = defaultIdentityCheckInterval
	}
	if cfg.LivenessCheckEvery == 0 {
		cfg.LivenessCheckEvery = defaultLivenessCheckEvery
	}
	if cfg.StorageTimeout == 0 {
		cfg.StorageTimeout = defaultStorageTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &cfg.Routes
	setDefault(&r.Login, "/login")
	setDefault(&r.Callback, "/oauth/callback")
	setDefault(&r.Session, "/api/session")
	setDefault(&r.Logout, "/api/logout")
	setDefault(&r.Upgrade, "/login/upgrade")
	setDefault(&r.SwitchAccount, "/api/accounts/switch")
	setDefault(&r.LogoutAccount, "/api/accounts/logout")
	if cfg.MaxAccounts == 0 {
		cfg.MaxAccounts = defaultMaxAccounts
	}
	setDefault(&r.MobileStart, "/api/auth/mobile-start")
	setDefault(&r.MobileToken, "/api/auth/mobile-token")
	setDefault(&r.MobileRefresh, "/api/auth/mobile-refresh")
	setDefault(&r.MobileRefreshLegacy, "/mobile/refresh-token")
	setDefault(&r.Sessions, "/api/sessions")
	setDefault(&r.EndSession, "/api/sessions/end")
	setDefault(&r.EndOtherSessions, "/api/sessions/end-others")
	setDefault(&r.EndAllSessions, "/api/sessions/end-all")
	mc := &cfg.Mobile
	if mc.SessionTTL == 0 {
		mc.SessionTTL = cfg.SessionTTL
	}
	if mc.CodeTTL == 0 {
		mc.CodeTTL = defaultMobileCodeTTL
	}
	if mc.RefreshGrace == 0 {
		mc.RefreshGrace = defaultMobileRefreshGrace
	}
	setDefault(&r.ClientMetadata, "/oauth-client-metadata.json")
	setDefault(&r.JWKS, "/oauth/jwks.json")
	return cfg
}

func setDefault(field *string, value string) {
	if *field == "" {
		*field = value
	}
}

// validate checks a defaulted Config and reports whether cookies must be
// Secure (every non-loopback BaseURL).
func (cfg Config) validate() (secure bool, err error) {
	bad := func(field, format string, args ...any) (bool, error) {
		return false, &ConfigurationError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if cfg.OAuthClient == nil {
		return bad("OAuthClient", "is required")
	}
	if cfg.Storage == nil {
		return bad("Storage", "is required")
	}
	if len(cfg.CookieSecret) < minSecretLength {
		return bad("CookieSecret", "must be at least %d bytes (got %d)", minSecretLength, len(cfg.CookieSecret))
	}
	for i, s := range cfg.OldCookieSecrets {
		if len(s) < minSecretLength {
			return bad("OldCookieSecrets", "secret %d must be at least %d bytes", i, minSecretLength)
		}
	}
	u, perr := url.Parse(cfg.BaseURL)
	if cfg.BaseURL == "" || perr != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return bad("BaseURL", "must be an origin such as https://myapp.example (got %q)", cfg.BaseURL)
	}
	switch u.Scheme {
	case "https":
		secure = true
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return bad("BaseURL", "plain http is only allowed on loopback hosts for development; use https")
		}
	default:
		return bad("BaseURL", "scheme must be https (or http on loopback)")
	}
	for _, ru := range cfg.Mobile.RedirectURIs {
		if why := validateRedirectURI(ru); why != "" {
			return bad("Mobile.RedirectURIs", "%q: %s", ru, why)
		}
	}
	// Only when the flow is on: its defaults follow SessionTTL.
	if mc := cfg.Mobile; mc.enabled() && (mc.SessionTTL < 0 || (mc.SessionTTL > 0 && mc.SessionTTL < time.Minute) || mc.CodeTTL < 10*time.Second || mc.CodeTTL > 5*time.Minute || mc.RefreshGrace < 0 || mc.RefreshGrace > 10*time.Minute) {
		return bad("Mobile", "SessionTTL must be 0 (the grant's) or at least a minute, CodeTTL between 10 seconds and 5 minutes, RefreshGrace at most 10 minutes (got %v, %v, %v)", mc.SessionTTL, mc.CodeTTL, mc.RefreshGrace)
	}
	for _, o := range cfg.AllowedOrigins {
		if ou, err := url.Parse(o); err != nil || (ou.Scheme != "https" && ou.Scheme != "http") || ou.Host == "" || ou.Path != "" || ou.RawQuery != "" || ou.User != nil {
			return bad("AllowedOrigins", "%q is not an origin such as https://www.myapp.example", o)
		}
	}
	for _, d := range cfg.LocalDomains {
		if !dnsName.MatchString(d) || net.ParseIP(d) != nil {
			return bad("LocalDomains", "%q is not a lower-case domain name such as test or pds.example", d)
		}
	}
	if !validCookieName(cfg.CookieName) {
		return bad("CookieName", "%q is not a valid cookie name", cfg.CookieName)
	}
	if strings.HasPrefix(cfg.CookieName, "__Host-") && (!secure || cfg.CookieDomain != "") {
		return bad("CookieName", "a __Host- cookie needs an https BaseURL and no CookieDomain")
	}
	if strings.HasPrefix(cfg.CookieName, "__Secure-") && !secure {
		return bad("CookieName", "a __Secure- cookie needs an https BaseURL")
	}
	if cfg.SessionTTL < 0 || (cfg.SessionTTL > 0 && cfg.SessionTTL < time.Minute) {
		return bad("SessionTTL", "must be 0 (as long as the grant) or at least a minute (got %v)", cfg.SessionTTL)
	}
	if cfg.MaxSessionAge < 0 || (cfg.MaxSessionAge > 0 && cfg.MaxSessionAge < time.Minute) {
		return bad("MaxSessionAge", "must be 0 (the grant's limit) or at least a minute (got %v)", cfg.MaxSessionAge)
	}
	if cfg.IdleTimeout < 0 || (cfg.IdleTimeout > 0 && cfg.IdleTimeout < time.Minute) {
		return bad("IdleTimeout", "must be 0 (off) or at least a minute (got %v)", cfg.IdleTimeout)
	}
	if cfg.IdentityCheckInterval > 0 && cfg.IdentityCheckInterval < minIdentityCheckInterval {
		return bad("IdentityCheckInterval", "must be at least %v, or negative to turn the checks off (got %v)", minIdentityCheckInterval, cfg.IdentityCheckInterval)
	}
	if cfg.LivenessCheckEvery > 0 && cfg.LivenessCheckEvery < minLivenessCheckEvery {
		return bad("LivenessCheckEvery", "must be negative (off), 0 (5 minutes) or at least a minute (got %v)", cfg.LivenessCheckEvery)
	}
	if cfg.SessionCacheTTL < 0 || cfg.SessionCacheTTL > 5*time.Minute {
		return bad("SessionCacheTTL", "must be between 0 (off) and 5 minutes (got %v)", cfg.SessionCacheTTL)
	}
	if cfg.StorageTimeout < 10*time.Millisecond || cfg.StorageTimeout > time.Minute {
		return bad("StorageTimeout", "must be between 10ms and a minute (got %v)", cfg.StorageTimeout)
	}
	if cfg.MaxAccounts < 1 || cfg.MaxAccounts > maxAccountsCap {
		return bad("MaxAccounts", "must be between 1 and %d (got %d)", maxAccountsCap, cfg.MaxAccounts)
	}
	if cfg.FlowTTL < time.Minute || cfg.FlowTTL > time.Hour {
		return bad("FlowTTL", "must be between a minute and an hour (got %v)", cfg.FlowTTL)
	}
	for name, p := range map[string]string{
		"Routes.Login": cfg.Routes.Login, "Routes.Callback": cfg.Routes.Callback,
		"Routes.Session": cfg.Routes.Session, "Routes.Logout": cfg.Routes.Logout, "Routes.Upgrade": cfg.Routes.Upgrade,
		"Routes.SwitchAccount": cfg.Routes.SwitchAccount, "Routes.LogoutAccount": cfg.Routes.LogoutAccount,
		"Routes.MobileStart": cfg.Routes.MobileStart, "Routes.MobileToken": cfg.Routes.MobileToken,
		"Routes.MobileRefresh": cfg.Routes.MobileRefresh, "Routes.MobileRefreshLegacy": cfg.Routes.MobileRefreshLegacy,
		"Routes.Sessions": cfg.Routes.Sessions, "Routes.EndSession": cfg.Routes.EndSession,
		"Routes.EndOtherSessions": cfg.Routes.EndOtherSessions, "Routes.EndAllSessions": cfg.Routes.EndAllSessions,
		"Routes.ClientMetadata": cfg.Routes.ClientMetadata, "Routes.JWKS": cfg.Routes.JWKS,
	} {
		if !strings.HasPrefix(p, "/") {
			return bad(name, "must be a path starting with / (got %q)", p)
		}
	}
	return secure, nil
}

// origin is BaseURL's origin as browsers send it (validated already).
func (cfg Config) origin() string {
	u, _ := url.Parse(cfg.BaseURL)
	return canonicalOrigin(u)
}

// allowedOrigins are AllowedOrigins as browsers send them.
func (cfg Config) allowedOrigins() []string {
	out := make([]string, 0, len(cfg.AllowedOrigins))
	for _, o := range cfg.AllowedOrigins {
		u, _ := url.Parse(o)
		out = append(out, canonicalOrigin(u))
	}
	return out
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validCookieName accepts RFC 6265 token characters.
func validCookieName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}
