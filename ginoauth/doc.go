// Package ginoauth adds AT Protocol (Bluesky) OAuth login, and the
// server-side sessions that keep users logged in, to Gin apps: a middleware
// that loads the session, prebuilt login, callback, logout and device
// routes, and guards for protected routes.
//
//	mgr, err := ginoauth.New(ginoauth.Config{
//		OAuthClient:  indigoclient.New(oauthConfig, store, indigoclient.Options{}),
//		Storage:      store, // stores/sqlitestore, postgresstore, redisstore or memstore
//		CookieSecret: os.Getenv("COOKIE_SECRET"),
//		BaseURL:      "https://myapp.example",
//	})
//	r.Use(ginoauth.Middleware(mgr)) // loads the session; never blocks anonymous requests
//	mgr.Mount(r)                    // /login, /oauth/callback, /api/session, /api/logout, ...
//	r.GET("/me", ginoauth.RequireAuth(mgr), func(c *gin.Context) {
//		user, _ := ginoauth.CurrentUser(c)
//		c.JSON(http.StatusOK, gin.H{"did": user.DID, "handle": user.Handle})
//	})
//
// The app is a backend-for-frontend: it is the OAuth client, it keeps the
// tokens and DPoP keys on the server, and the browser only ever holds an
// encrypted cookie with a random session id (a native app holds a bearer
// token instead).
//
// # Wiring it up
//
// A Manager needs an OAuth client (any oauthclient.Client;
// ginoauth/indigoclient adapts indigo's), a storage.Store, a cookie secret
// and the app's public origin:
//
//	store, _ := sqlitestore.Open("app.db", sqlitestore.Options{CleanupInterval: 10 * time.Minute})
//	client := indigoclient.New(oauth.NewPublicConfig(
//		"https://myapp.example/oauth-client-metadata.json",
//		"https://myapp.example/oauth/callback",
//		[]string{"atproto", "repo:app.bsky.feed.post?action=create"},
//	), store, indigoclient.Options{})
//
// Middleware(mgr) goes on the router; Manager.Mount registers the prebuilt
// routes (the one way to mount them); RequireAuth(mgr),
// RequireScopes(mgr, perms...) and RequireSameOrigin(mgr) guard the app's
// own routes. The state-changing prebuilt routes and RequireSameOrigin
// refuse requests from untrusted origins with the standard library's
// http.CrossOriginProtection (trusting BaseURL and Config.AllowedOrigins),
// and the POST routes read their parameters from the body only. Close the Manager and the client after the server stops
// (client.Close may be finishing a token save), then the store.
//
// Login starts and callbacks are limited per client address (RateLimits,
// on by default); the address is c.ClientIP(), so tell the engine its
// proxies with SetTrustedProxies (nil when clients connect directly).
//
// # A login, step by step
//
//  1. GET or POST /login with a handle (or DID): Manager.StartOAuth checks
//     its syntax before any network call, and the OAuth client resolves the
//     account's PDS and authorization server and sends the pushed
//     authorization request (PAR) with PKCE S256 and a DPoP proof. The
//     Manager keeps a flow record under the OAuth state, server side, for
//     Config.FlowTTL: the return path and a hash of a random browser
//     binding. No application data travels inside state. The binding goes
//     into a short-lived flow cookie, and the browser is redirected to the
//     authorization server.
//  2. The user signs in and approves at their server, which sends the
//     browser back to /oauth/callback with code, state and iss.
//  3. Manager.HandleCallback takes the flow record for state atomically (a
//     replayed callback finds nothing) and checks that the flow cookie
//     holds its binding: a callback from another browser (login CSRF) is
//     refused. The OAuth client checks error and iss, exchanges the code
//     with the PKCE verifier under DPoP, and checks that the token's sub is
//     the account the login started with.
//  4. The session core creates a device session: a random 256-bit id,
//     stored only as its SHA-256 (sess:{hash}) with the account DID, the
//     verified handle, the OAuth session's id, the granted scopes and the
//     absolute expiry (Config.SessionTTL), and indexed under the account.
//     The sessions the browser already had are ended like a logout (but
//     for an added account, StartOptions.AddAccount: then the browser's
//     accounts held at the start stay), so the id always changes at login
//     (no fixation). The id goes to the browser in the session cookie,
//     sealed with AES-256-GCM (CookieStore), and the browser is redirected
//     to the checked return path.
//
// # Every request
//
// Middleware (or RequireAuth, or Manager.ValidateSession) recognises a
// native app's bearer token first; anything else is the session cookie:
// one cookie decode and one storage read (none with
// Config.SessionCacheTTL). The absolute expiry and, when Config.IdleTimeout
// is set, the idle timeout are enforced on the server. The outcome is kept
// for the request: CurrentUser returns the user, and ValidateSession says
// why there is none (a *SessionError with an ErrorCode such as
// CodeNotLoggedIn, CodeSessionExpired, CodeInvalidCookie or
// CodeOAuthSessionGone). A storage failure is a *storage.Error (503), never
// a silent "logged out".
//
// # Calling the user's PDS
//
// Manager.OAuthSession returns a ready oauthclient.Session: its Do sends a
// request with the DPoP-bound access token, answers DPoP nonce challenges,
// and refreshes the tokens when the PDS says they expired;
// indigoclient.APIClient gives indigo's typed XRPC client over the same
// session. Manager.OAuthSessionForAccount does the same outside a request.
//
// Refresh tokens are single use, and the reference PDS ends the whole
// session when a spent one comes back. indigoclient refreshes under a lock
// shared by every instance (the Storage's storage.Locker), re-reads the
// stored tokens first, writes tokens only as their lock holder and never
// over newer ones, runs the refresh and its save detached from the request,
// and keeps rotated tokens in memory if storage fails until they are saved.
// N concurrent requests on M instances make exactly one refresh. A refresh
// the server refuses for good ends the device session in the same call; one
// that changes the granted scopes writes them to the device session's
// record, from which User.Allows answers.
//
// A native app's token rotations, the scope writes and the end of one login
// hold its device lock (the same storage.Locker), so rotations on any
// number of instances answer one successor, and a logout never interleaves
// with them.
//
// # The end of a session
//
// Every way a session ends (logout, end one device, end everywhere,
// expiry, idle timeout, a refused refresh, a new login on the device, a
// native app's one-time code presented again) goes through one place: its records are deleted (so every instance refuses
// it at once), its index entry removed, its tokens revoked at the
// authorization server (waiting for a refresh in flight, so the current
// tokens are the ones revoked), and Config.OnEvent gets one Event with an
// EndReason. Manager.Logout (POST /api/logout; there is no GET logout)
// ends every account of the browser and clears the cookie; POST
// /api/accounts/logout ends the active account only (see Manager.Accounts).
//
// # Errors
//
// Every error is typed (ConfigurationError, OAuthFlowError, SessionError,
// MobileIntegrationError, and storage.Error from the store) and carries an
// ErrorCode and a message that is safe to show. ErrorResponseFor maps any
// of them to the status, code and message the prebuilt handlers answer
// with; Config.ErrorHandler renders them your way (for example as HTML
// pages), for the prebuilt handlers, Middleware and the guards alike.
//
// # Deploying
//
// New refuses a Config its OAuth client's registration contradicts (with
// oauthclient.RegistrationReporter, which indigoclient has): a BaseURL on
// another origin than the redirect URI, a callback route that is not its
// path. Once the app listens, Manager.SelfCheck does what an authorization
// server and a browser will do (the redirect URI, the forwarded headers,
// the client metadata document and JWKS) and reports each difference with
// what was expected and what was found; cmd/ginoauth-check does the
// document's part from outside.
//
// # Storage
//
// Everything server side lives in one storage.Store (Get, Set and Delete
// with TTLs, plus the optional Taker, Locker and Indexer that several
// instances and the device list need). Keys: flow:{state}, sess:{hash},
// seen:{hash}, acct:{did}, ended:{hash}, alive:{hash}:{window},
// mcode:{hash}, mcode-spent:{hash}, and the
// locks device:{login} and mcode-lock:{hash}; and the OAuth client's own
// (indigoclient: oauth:req:{state}, oauth:sess:{did}:{id}).
// ginoauth/storagetest checks any implementation.
//
// # Testing
//
// ginoauth/ginoauthtest is a local AT Protocol authorization server and PDS
// that checks PAR, PKCE, DPoP, state and iss for real, with a cookie-jar
// Browser that runs a whole login against your app in a test.
package ginoauth
