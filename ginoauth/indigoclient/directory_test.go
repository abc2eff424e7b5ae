package indigoclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// Reserved and local names never reach a resolver: no DNS query, no HTTP
// request. (The directory's HTTP client would refuse private addresses
// anyway; this refuses before anything leaves the process.)
func TestDefaultDirectoryRefusesReservedNames(t *testing.T) {
	d := newPublicDirectory("test")
	d.base.HTTPClient.Transport = refuseAll{t}
	d.base.Resolver.Dial = nil
	ctx := context.Background()
	for _, h := range []string{"alice.local", "printer.internal", "x.onion", "alice.test", "box.localhost", "a.example", "b.invalid", "c.home.arpa", "nas.lan"} {
		_, err := d.LookupHandle(ctx, syntax.Handle(h))
		if !errors.Is(err, errReservedName) || !isMissingAccount(err) {
			t.Errorf("%s: want a reserved-name refusal, got %v", h, err)
		}
	}
	for _, did := range []string{"did:web:127.0.0.1", "did:web:localhost%3A8080", "did:web:evil.internal", "did:web:[::1]"} {
		if _, err := d.LookupDID(ctx, syntax.DID(did)); !errors.Is(err, errReservedName) {
			t.Errorf("%s: want a refusal, got %v", did, err)
		}
	}
}

type refuseAll struct{ t *testing.T }

func (r refuseAll) RoundTrip(req *http.Request) (*http.Response, error) {
	r.t.Errorf("unexpected request to %s", req.URL)
	return nil, errors.New("refused")
}

// stubDirectory answers every lookup with err.
type stubDirectory struct{ err error }

func (s stubDirectory) LookupHandle(context.Context, syntax.Handle) (*identity.Identity, error) {
	return nil, s.err
}
func (s stubDirectory) LookupDID(context.Context, syntax.DID) (*identity.Identity, error) {
	return nil, s.err
}
func (s stubDirectory) Lookup(context.Context, syntax.AtIdentifier) (*identity.Identity, error) {
	return nil, s.err
}
func (s stubDirectory) Purge(context.Context, syntax.AtIdentifier) error { return nil }

// A handle that does not exist is the user's mistake (ErrAccountNotFound,
// which the Manager answers 400 resolve_failed); a lookup that could not be
// completed is not (ErrServerUnavailable: 502 server_unavailable).
func TestAuthorizeTellsMissingAccountsFromFailedLookups(t *testing.T) {
	cases := []struct {
		ident string
		err   error
		kind  error
	}{
		{"nobody.example.com", identity.ErrHandleNotFound, oauthclient.ErrAccountNotFound},
		{"did:plc:abcdefghijklmnopqrstuvwx", identity.ErrDIDNotFound, oauthclient.ErrAccountNotFound},
		{"alice.example.com", fmt.Errorf("%w: dial tcp: i/o timeout", identity.ErrHandleResolutionFailed), oauthclient.ErrServerUnavailable},
		{"did:plc:abcdefghijklmnopqrstuvwx", fmt.Errorf("%w: PLC unreachable", identity.ErrDIDResolutionFailed), oauthclient.ErrServerUnavailable},
	}
	for _, tc := range cases {
		c := New(oauth.NewLocalhostConfig("http://127.0.0.1/cb", []string{"atproto"}), memstore.New(), Options{Directory: stubDirectory{tc.err}})
		_, err := c.Authorize(context.Background(), oauthclient.AuthorizeRequest{Identifier: tc.ident})
		var fe *oauthclient.FlowError
		if !errors.As(err, &fe) || !errors.Is(err, tc.kind) {
			t.Errorf("%s with %v: want a FlowError of kind %v, got %v", tc.ident, tc.err, tc.kind, err)
		}
		if fe != nil && tc.kind == oauthclient.ErrAccountNotFound && strings.HasPrefix(tc.ident, "did:") && fe.Message != "no account was found for that DID" {
			t.Errorf("%s: message %q should speak of a DID", tc.ident, fe.Message)
		}
		_ = c.Close()
	}
}
