package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// The local authorization server (ginoauthtest) runs in the harness
// process; the app under test runs in a server process of its own, so that
// its heap and RSS hold nothing of the authorization server. The app reaches
// the server over loopback through asTransport and resolves accounts with
// benchDirectory, which derives every account from its number: account i
// has the handle accountHandle(i) and the DID accountDID(i), and the
// harness creates exactly those accounts on the authorization server.

const asHost = "pds.test" // ginoauthtest's default public host

// accountHandle is account i's handle: alice.test, then u1.test, u2.test...
func accountHandle(i int) string {
	if i == 0 {
		return "alice.test"
	}
	return "u" + strconv.Itoa(i) + ".test"
}

// accountDID is account i's did:plc: 24 lower-case letters spelling i.
func accountDID(i int) syntax.DID {
	digits := fmt.Sprintf("%024d", i)
	var b strings.Builder
	for j := 0; j < len(digits); j++ {
		b.WriteByte('a' + digits[j] - '0')
	}
	return syntax.DID("did:plc:" + b.String())
}

func accountFromHandle(h syntax.Handle) (int, bool) {
	s := strings.ToLower(h.String())
	if s == "alice.test" {
		return 0, true
	}
	if !strings.HasPrefix(s, "u") || !strings.HasSuffix(s, ".test") {
		return 0, false
	}
	i, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(s, "u"), ".test"))
	if err != nil || i <= 0 || accountHandle(i) != s {
		return 0, false
	}
	return i, true
}

func accountFromDID(did syntax.DID) (int, bool) {
	s, ok := strings.CutPrefix(did.String(), "did:plc:")
	if !ok || len(s) != 24 {
		return 0, false
	}
	i := 0
	for _, c := range s {
		if c < 'a' || c > 'j' {
			return 0, false
		}
		i = i*10 + int(c-'a')
	}
	return i, true
}

// benchDirectory resolves the harness's accounts, as ginoauthtest's own
// Directory does: handle <-> DID, PDS https://pds.test.
type benchDirectory struct{ accounts int }

func (d benchDirectory) ident(i int) *identity.Identity {
	h := syntax.Handle(accountHandle(i))
	return &identity.Identity{
		DID: accountDID(i), Handle: h, AlsoKnownAs: []string{"at://" + h.String()},
		Services: map[string]identity.ServiceEndpoint{"atproto_pds": {Type: "AtprotoPersonalDataServer", URL: "https://" + asHost}},
		Keys:     map[string]identity.VerificationMethod{},
	}
}

func (d benchDirectory) LookupHandle(_ context.Context, h syntax.Handle) (*identity.Identity, error) {
	if i, ok := accountFromHandle(h); ok && i < d.accounts {
		return d.ident(i), nil
	}
	return nil, fmt.Errorf("%w: %s", identity.ErrHandleNotFound, h)
}

func (d benchDirectory) LookupDID(_ context.Context, did syntax.DID) (*identity.Identity, error) {
	if i, ok := accountFromDID(did); ok && i < d.accounts {
		return d.ident(i), nil
	}
	return nil, fmt.Errorf("%w: %s", identity.ErrDIDNotFound, did)
}

func (d benchDirectory) Lookup(ctx context.Context, atid syntax.AtIdentifier) (*identity.Identity, error) {
	if h, err := atid.AsHandle(); err == nil {
		return d.LookupHandle(ctx, h)
	}
	if did, err := atid.AsDID(); err == nil {
		return d.LookupDID(ctx, did)
	}
	return nil, fmt.Errorf("neither a handle nor a DID: %s", atid)
}

func (benchDirectory) Purge(context.Context, syntax.AtIdentifier) error { return nil }

// asTransport sends https://pds.test/... to the authorization server's
// loopback address over plain HTTP, keeping Host: pds.test and the path
// (what ginoauthtest's HTTPClient does in process), and refuses every other
// destination.
type asTransport struct {
	target *url.URL
	rt     http.RoundTripper
}

func newASClient(asURL string) (*http.Client, error) {
	u, err := url.Parse(asURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bad -as-url %q", asURL)
	}
	rt := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	return &http.Client{Transport: &asTransport{target: u, rt: rt}, Timeout: 30 * time.Second}, nil
}

func (t *asTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" || !strings.EqualFold(req.URL.Host, asHost) {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("benchharness: refusing request to %s://%s (only https://%s is reachable)", req.URL.Scheme, req.URL.Host, asHost)
	}
	out := req.Clone(req.Context())
	out.URL.Scheme = t.target.Scheme
	out.URL.Host = t.target.Host
	out.Host = req.URL.Host
	return t.rt.RoundTrip(out)
}
