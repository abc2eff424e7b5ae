// Package refpds lets Go tests drive a real OAuth login against the reference
// Bluesky PDS (npm @atproto/pds, which contains the reference OAuth
// authorization server) running on loopback.
//
// The server is installed and started by the scripts in scripts/refpds:
//
//	bash scripts/refpds/install.sh && bash scripts/refpds/start.sh
//	go test ./internal/refpds/ -run Interop -v
//	bash scripts/refpds/stop.sh
//
// start.sh writes an env file (see [DefaultEnvFile]) that [FromEnv] reads.
// The PDS believes it is https://pds.test (issuer, public URL and the
// "atproto_pds" endpoint of every account) while it listens on
// http://127.0.0.1:<port>. [Env.HTTPClient] bridges the two: it sends
// https://pds.test/... to the loopback port, keeps "Host: pds.test", and
// refuses every other destination, so a test never leaves the machine.
// [Env.Directory] resolves the test accounts without DNS or PLC lookups.
//
// A test that uses indigo's OAuth client sets, on its oauth.ClientApp:
//
//	app.Client = env.HTTPClient()
//	app.Resolver.Client = env.HTTPClient()
//	app.Dir = env.Directory()
//
// with a client from oauth.NewLocalhostConfig whose redirect URI uses
// 127.0.0.1 (not localhost). [Env.SignInAndConsent] then plays the user in
// the reference login page ([Env.NewBrowser] keeps one browser's cookies
// across attempts), and [Env.ProbeAccessToken] and
// [Env.ProbeRefreshToken] check from the outside whether the server still
// honours a session's tokens (for example after a logout).
//
// Nothing in this package fails when the server is not running: [FromEnv]
// returns an error (wrapping [ErrNotRunning]) that says how to start it, and
// [ForTest] turns that into t.Skip, or into t.Fatal when
// GINOAUTH_REFPDS_REQUIRE=1 (for CI, so that a broken start is not a silent
// skip).
package refpds
