// Package ginoauthtest runs a local AT Protocol OAuth authorization server
// and PDS (personal data server) for tests, in the spirit of net/http/httptest.
//
// One loopback server plays both roles under one public identity,
// https://pds.test (the host is configurable with Options.Host): it is the
// OAuth issuer, the resource server, and the PDS every account's DID document
// points to. It speaks the real protocol to real clients, such as indigo's
// atproto/auth/oauth ClientApp, and checks every step for real, so a client
// that skips or botches one fails here the way it would against a production
// PDS. It behaves like the reference PDS (@atproto/pds) where that matters to
// clients: the issuer has no port, the first DPoP proof without a nonce is
// answered use_dpop_nonce, a replayed refresh token kills the session, and
// revocation ends the session.
//
// It imports nothing from ginoauth and can test any AT Protocol OAuth client.
//
// # Pointing a client at it
//
// AT Protocol clients insist on https URLs without a port (indigo's resolver
// refuses anything else), while a test server listens on
// http://127.0.0.1:<random port>. Two pieces bridge that:
//
//   - [Server.HTTPClient] returns an *http.Client whose transport sends
//     https://pds.test/... to the loopback listener (keeping Host: pds.test
//     and the path, so the server sees what the client sent) and refuses
//     every other destination, so a test cannot reach the network by
//     accident. [Server.Route] adds more origins (for example your app's,
//     to serve a client metadata document).
//   - [Server.Directory] is an identity directory that knows the server's
//     accounts: handle -> DID -> PDS https://pds.test.
//
// With indigo:
//
//	srv := ginoauthtest.New(t, ginoauthtest.Options{})
//	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
//
//	cfg := oauth.NewLocalhostConfig("http://127.0.0.1/callback", []string{"atproto", "transition:generic"})
//	app := oauth.NewClientApp(&cfg, oauth.NewMemStore())
//	app.Client = srv.HTTPClient()
//	app.Resolver.Client = srv.HTTPClient()
//	app.Dir = srv.Directory()
//
//	authURL, _ := app.StartAuthFlow(ctx, "alice.test")            // PAR (with a use_dpop_nonce round)
//	redirect, _ := srv.Consent(ctx, authURL, "alice.test", true)  // the user clicks Approve
//	u, _ := url.Parse(redirect)                                    // http://127.0.0.1/callback?code=...&state=...&iss=https%3A%2F%2Fpds.test
//	sess, _ := app.ProcessCallback(ctx, u.Query())                 // token request
//
// With ginoauth, pass the same client and directory to indigoclient.New
// (Options.HTTPClient and Options.Directory), and list the server's names in
// ginoauth.Config.LocalDomains ([]string{"test"} for pds.test and its
// accounts): ginoauth refuses logins naming a reserved suffix such as .test
// unless the app lists it.
//
// In an end-to-end test of a web app, start the login through the app (with
// a cookie jar), take the authorization URL from the app's redirect, call
// [Server.Consent], and GET the returned URL through the same client: the
// app's callback then runs exactly as after a real browser login. For the
// simplest tests, Options.AutoApprove makes the authorization endpoint redirect
// straight back for the login_hint account, so a cookie-jar client that
// follows redirects completes the whole login by itself, provided it can
// reach the authorization URL (rewrite it with [Server.RewriteForBrowser] or
// use [Server.HTTPClient]).
//
// # What it checks
//
// Metadata: /.well-known/oauth-protected-resource and
// /.well-known/oauth-authorization-server carry every field indigo's
// AuthServerMetadata.Validate requires (PAR required, S256, ES256, none and
// private_key_jwt, the atproto scope, the iss parameter, client ID metadata
// documents, a revocation endpoint), and the prompt values it accepts.
//
// DPoP proofs (RFC 9449), at every token-related endpoint and at the PDS:
// exactly one compact JWS; typ dpop+jwt; alg ES256; an embedded public P-256
// jwk; a valid signature; htm equal to the request method; htu equal to
// https://<host><path>; iat within a minute in the past and ten seconds in the
// future (wall clock); exp, if present, not passed; jti never seen before; and
// nonce equal to the server's current or previous nonce. A proof without a
// valid nonce is answered 400 {"error":"use_dpop_nonce"} (authorization
// server) or 401 with WWW-Authenticate: DPoP error="use_dpop_nonce" (PDS), with
// a DPoP-Nonce header either way. Nonces rotate every [DefaultNonceRotation]
// (Options.NonceRotation, [Server.RotateDPoPNonce]).
//
// Clients: a client_id is either the loopback development client
// (http://localhost?redirect_uri=...&scope=..., redirect URIs on 127.0.0.1 or
// [::1] only, defaulting to http://127.0.0.1/ and http://[::1]/, scope
// defaulting to atproto; granular and include: scopes are declared there
// too, query-encoded as indigo's NewLocalhostConfig writes them), or an https URL whose metadata document was given
// to [Server.RegisterClient] (or is fetched with the client set by
// [Server.SetClientMetadataClient]; no redirects). Confidential clients
// (token_endpoint_auth_method private_key_jwt) must authenticate on every
// PAR, token and revocation request with a client assertion: ES256, a kid
// from the client's jwks, iss = sub = client_id, aud = the issuer, an exp in
// the future, a fresh iat, and a jti used only once. Public clients must not
// send one. Like the reference server, a confidential session is bound to
// the key (kid, alg and the key's thumbprint) of its PAR's assertion: the
// code exchange, every refresh and every revocation of its tokens must be
// signed with that key (invalid_grant "The session was initiated with a
// different key than the client assertion currently used" otherwise;
// invalid_request at the revocation endpoint), and whenever the server reads
// the client's metadata again (a fetched document at every request of the
// client, a new [Server.RegisterClient], [Server.RefreshClientMetadata]) it
// ends the sessions whose key is no longer in it.
//
// PAR (/oauth/par): a valid DPoP proof, then the client; response_type code;
// a registered redirect_uri (exact match; any port for loopback IPs, RFC 8252);
// state; code_challenge_method S256 with a code_challenge; a scope that
// includes atproto and only values the client declared, compared as exact
// strings like the reference server does (repo:com.example.note does not
// cover repo:com.example.note?action=create), repeated values dropped; every
// include:<nsid> naming a permission set published with
// [Server.PublishPermissionSet] (invalid_scope otherwise, as when the
// reference cannot resolve a set); prompt, if sent, one of none, login,
// select_account, consent and create (invalid_request otherwise), and none
// only from a confidential client (a public one gets consent_required, like
// from the reference server); no repeated parameters. login_hint is kept as
// sent. The DPoP key's thumbprint (RFC 7638) is bound to the request. The
// answer is 201 with a single-use request_uri valid for [RequestLifetime].
//
// Authorization (/oauth/authorize): a consent page showing the client, its
// redirect URI, the scopes (with what each include: scope's set grants) and
// the account (from login_hint, or a handle field), with Approve and Deny.
// With prompt=create it is a sign-up form instead: a handle field (prefilled
// from login_hint) whose approval creates that account with
// [Server.CreateAccount]'s rules and approves for it (an existing handle is
// simply approved for). prompt=login, select_account and consent show the
// usual page. prompt=none shows no page: it redirects with
// error=login_required, since no one is ever signed in here, unless
// auto-approve mode is on. The form posts back with a CSRF token tied to the
// request_uri; cross-site posts are refused. Approve redirects (303) to
// redirect_uri?code=...&state=...&iss=https://<host>; Deny to
// redirect_uri?error=access_denied&state=...&iss=.... A used or expired
// request_uri redirects with error=access_denied, as the reference server
// does. No password is asked. An approval grants the requested scope minus
// what [Server.DenyScopes] refuses.
//
// Token (/oauth/token), authorization_code grant: DPoP proof with the same key
// as the PAR; a code that exists, was not used before (a reused code also ends
// the session it created) and is younger than [CodeLifetime]; the same
// client_id and redirect_uri; code_verifier matching the S256 challenge. The
// answer has access_token, refresh_token, token_type "DPoP", sub (the DID),
// scope and expires_in. refresh_token grant: DPoP proof with the session's
// key; the current refresh token of a live session. Each refresh rotates both
// tokens, and only the newest access token is accepted from then on. The
// scope of both grants is the granted scope with every include:<nsid>
// expanded, as the reference server does: the set's granular permissions as
// published at that moment (so a refresh after a set lost permissions grants
// less), then the other scope values; never an include:<nsid> scope itself
// (a value that does not parse as one is passed on like any other, as by
// the reference).
// Expansion follows the reference: only repo: and rpc: permissions whose
// collections and methods are under the set's NSID authority (the NSID up
// to its last dot) are granted; an rpc permission with inheritAud takes the
// aud of the include: scope and is dropped without one; permissions are
// written in the reference's canonical form (repo:com.example.note?action=create,
// repo?collection=a&collection=b, all three actions left out,
// rpc:com.example.getNotes?aud=did:web:api.example.com%23svc). A
// rotated-out refresh token is a replay: 400 {"error":"invalid_grant",
// "error_description":"Refresh token replayed"}, and the whole session is
// deleted, so its current tokens stop working too. Sessions are capped at two
// weeks for public clients and two years for confidential ones
// (Options.PublicSessionLifetime, Options.ConfidentialSessionLifetime); a confidential client's refresh token also
// expires after three months without use.
//
// Revocation (/oauth/revoke, RFC 7009): DPoP proof and client
// authentication; a live token must be revoked by the client it was issued to,
// with the DPoP key it is bound to. Revoking either token ends the whole
// session; unknown, rotated-out and already revoked tokens get 200.
//
// PDS (/xrpc/...): requests with credentials must send
// Authorization: DPoP <token> (Bearer is refused) and a DPoP proof with
// ath = base64url(SHA-256(token)) whose key is the one the token is bound to.
// An expired, rotated-out, revoked or unknown token gets 401 with
// WWW-Authenticate: DPoP error="invalid_token", error_description="..."
// (the answer that makes indigo refresh). Writes are checked against the
// granted (expanded) scope like the reference PDS does: transition:generic
// allows every write; otherwise a repo: scope must name the collection (or
// "*") and the action, create for createRecord, delete for deleteRecord, and
// both create and update for putRecord (a repo: scope without action allows
// all three; one that does not parse, with indigo's atproto/auth parser,
// allows nothing). A missing permission is answered 403
// {"error":"InsufficientScope","message":"Missing required scope
// \"repo:<collection>?action=<action>\""}. XRPC errors have the body
// {"error":...,"message":...}. Methods: _health, com.atproto.server.getSession,
// com.atproto.repo.createRecord, putRecord, deleteRecord, getRecord and
// listRecords (records kept in memory; rkeys are TIDs; CIDs are deterministic
// but not real DAG-CBOR CIDs), and app.bsky.actor.getProfile (display name
// from the account, or from an app.bsky.actor.profile/self record).
//
// Permission sets ([Server.PublishPermissionSet]) are lexicon documents
// published as on the network: the record
// com.atproto.lexicon.schema/<nsid> in the repository of did:web:<host>, the
// server's own lexicon authority (not an account), readable without
// authentication through getRecord and listRecords; that DID resolves in
// [Server.Directory] and through https://<host>/.well-known/did.json, and the
// directory's ResolveNSID maps the set's NSID to it.
//
// # What it deliberately does not do
//
// No passwords, and no account management UI (accounts come from
// [Server.CreateAccount], or from the prompt=create sign-up form, which asks
// only for a handle); no browser sessions, so nothing is remembered between
// authorizations (prompt=none never signs in silently outside auto-approve
// mode, select_account has no accounts to choose among, and consent is
// asked every time); login_hint is not validated (the reference refuses one
// that is neither a handle nor a DID); no JAR (request objects), no response
// modes other than query; tokens are opaque random strings, not JWTs. Of
// the granular permissions only repo: scopes are enforced, on writes: there
// are no blob uploads, no service proxying (rpc:), and no account or identity
// methods, so blob:, rpc:, account: and identity: scopes are granted and
// reported but never checked. Permission sets come only from
// [Server.PublishPermissionSet] (no DNS, no fetching from other servers) and
// cannot be unpublished. No lexicon validation of records, no real
// repository (commits, CAR files, MST), no firehose, no app view (getProfile
// answers from local data); no CORS for browser-based OAuth clients; no TLS:
// the https identity is provided by the transport of [Server.HTTPClient].
//
// # A browser for end-to-end tests
//
// [NewBrowser] returns a cookie-jar [Browser] for your app that runs a whole
// login the way a person does: your app's /login with the handle, consent
// at this server ([Server.Consent] is the [ConsentFunc] to give it), and
// your app's callback. An end-to-end test of an app is then a few lines:
//
//	srv := ginoauthtest.New(t, ginoauthtest.Options{})
//	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
//	app := httptest.NewServer(myApp(srv.HTTPClient(), srv.Directory()))
//	b := ginoauthtest.NewBrowser(t, app.URL, srv.Consent)
//	b.Login("alice.test", "/")
//	r := b.Get("/me") // logged in
//
// # Test controls
//
// Everything is safe for concurrent use. [Server.CreateAccount] adds accounts
// (did:plc with 24 base32 characters, optional display name).
// [Server.PublishPermissionSet] publishes or replaces a permission set;
// [Server.DenyScopes] makes the user grant less than requested from then on.
// [Server.AuthorizationRequests] lists the pushed authorization requests as
// the clients sent them (scope, prompt, login_hint).
// [Server.ExpireAccessTokens] expires the access tokens issued so far;
// [Server.SetAccessTokenLifetime] changes the lifetime of new ones;
// [Server.Advance] moves the server clock (request URIs, codes, tokens,
// sessions, nonces) without sleeping. [Server.Stats] counts PARs, approvals,
// grants of each type, token errors, replays, revocations, nonce challenges,
// accounts created by sign-up and active sessions. [Server.Session], [Server.Sessions], [Server.Revoked]
// and [Server.TokenActive] inspect sessions and tokens; [Server.RevokeToken]
// and [Server.RevokeAll] end them from the server side, and
// [Server.RefreshClientMetadata] ends those whose client key left the
// client's metadata; [Server.Record] reads
// a stored record. [Server.DPoPNonce] helps tests that build proofs by hand.
// A negative test that needs a broken authorization response (a wrong iss,
// a missing state) edits the redirect URL returned by [Server.Consent].
//
// Accounts change as on the network, with the reference PDS's answers (see
// identity.go): [Server.UpdateHandle], [Server.UnpublishHandle] (the handle
// stops verifying: clients show handle.invalid), [Server.MoveAccount] (to
// another host of this authorization server added with [Server.AddPDSHost],
// or to another server), [Server.DeactivateAccount],
// [Server.ActivateAccount], [Server.TakeDownAccount] and
// [Server.DeleteAccount]; com.atproto.sync.getRepoStatus reports the
// status, and [Server.PDSRequests] counts the authenticated calls each PDS
// host answered.
//
// # Running it for a browser (offline demo)
//
// An example app can run the server as its built-in offline authorization
// server: [NewServer] (or [NewUnstartedServer] plus [Server.StartListener]
// with the address you choose) runs it as a long-lived loopback server. The
// app's OAuth client keeps talking to https://pds.test through
// [Server.HTTPClient], and every URL the client, the tokens and the
// authorization response contain stays https://pds.test (the iss check
// depends on it). Only the browser needs another address: pass the
// authorization URL the client returns through [Server.RewriteForBrowser]
// before redirecting the browser. It maps https://pds.test/... to the
// loopback address (or the base set with Options.BrowserURL); the consent page
// posts to a path relative to itself, and its redirect goes to the client's
// redirect_uri, e.g. http://127.0.0.1:<app port>/oauth/callback. The server
// handles requests the same whatever their Host header.
//
// Logging goes to Options.Logger (none by default)
// and never includes tokens, codes, keys or CSRF tokens.
package ginoauthtest
