// Package interop holds the library's interoperability tests against the
// reference Bluesky PDS and its OAuth authorization server (npm
// @atproto/pds), run on loopback by scripts/refpds. Our own test server
// (ginoauthtest) can only prove that the library agrees with us; the
// reference server is the strictest judge we have: a double-spent refresh
// token shows up there as "Refresh token replayed" and a dead session.
//
// Run them with:
//
//	bash scripts/refpds/install.sh && bash scripts/refpds/start.sh
//	go test ./internal/interop/ -v
//	bash scripts/refpds/stop.sh
//
// Without a running server every test is skipped with that hint (or fails,
// when GINOAUTH_REFPDS_REQUIRE=1, as in CI). Each flow is one test function
// on the shared app harness (newApp); new flows (mobile, concurrent refresh
// across instances) are added as further test functions.
package interop
