package indigoclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/bluesky-social/indigo/util/ssrf"
)

// errReservedName is returned for identifiers under a name that never
// resolves on the public network: resolving them would only reach private
// or local resolvers.
var errReservedName = errors.New("indigoclient: reserved or local name")

// reservedTLDs never name a public AT Protocol account: special-use names
// (RFC 6761, RFC 6762, RFC 7686, RFC 8375, RFC 9476) and names in common
// private use. ".test" is among them: use your own Directory (as ginoauthtest
// does) to resolve test accounts.
var reservedTLDs = map[string]bool{
	"alt": true, "arpa": true, "example": true, "internal": true, "invalid": true,
	"local": true, "localhost": true, "onion": true, "test": true, "home": true,
	"lan": true, "corp": true, "intranet": true, "private": true,
}

// publicDirectory is the default identity directory: indigo's resolver
// (DNS and HTTPS handles, PLC, did:web) with every HTTP request behind
// indigo's SSRF guard, and reserved names refused before any lookup. It has
// no cache: lookups happen only at login, and indigo's caching directory
// starts goroutines that can never be stopped.
type publicDirectory struct {
	base identity.BaseDirectory
}

func newPublicDirectory(userAgent string) *publicDirectory {
	d := &publicDirectory{base: identity.BaseDirectory{
		PLCURL:                identity.DefaultPLCURL,
		HTTPClient:            http.Client{Timeout: 10 * time.Second, Transport: ssrf.PublicOnlyTransport()},
		TryAuthoritativeDNS:   true,
		SkipDNSDomainSuffixes: []string{".bsky.social"},
		UserAgent:             userAgent,
	}}
	d.base.Resolver.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		dialer := net.Dialer{Timeout: 3 * time.Second}
		return dialer.DialContext(ctx, network, address)
	}
	return d
}

func checkHandle(h syntax.Handle) error {
	tld := strings.ToLower(h.TLD())
	if reservedTLDs[tld] || !h.AllowedTLD() {
		return fmt.Errorf("%w: %w (%q)", identity.ErrHandleReservedTLD, errReservedName, "."+tld)
	}
	return nil
}

// checkDID refuses did:web DIDs whose host is reserved or an IP address;
// did:plc goes to the PLC directory, a fixed public service.
func checkDID(did syntax.DID) error {
	if did.Method() != "web" {
		return nil
	}
	host := strings.ToLower(did.Identifier())
	if h, _, found := strings.Cut(host, "%3a"); found {
		host = h // a port: did:web:host%3A8080
	}
	if net.ParseIP(host) != nil {
		return fmt.Errorf("%w: did:web on an IP address", errReservedName)
	}
	if i := strings.LastIndexByte(host, '.'); i < 0 || reservedTLDs[host[i+1:]] {
		return fmt.Errorf("%w: did:web host %q", errReservedName, host)
	}
	return nil
}

func (d *publicDirectory) LookupHandle(ctx context.Context, h syntax.Handle) (*identity.Identity, error) {
	if err := checkHandle(h); err != nil {
		return nil, err
	}
	return d.base.LookupHandle(ctx, h)
}

func (d *publicDirectory) LookupDID(ctx context.Context, did syntax.DID) (*identity.Identity, error) {
	if err := checkDID(did); err != nil {
		return nil, err
	}
	return d.base.LookupDID(ctx, did)
}

func (d *publicDirectory) Lookup(ctx context.Context, atid syntax.AtIdentifier) (*identity.Identity, error) {
	if h, err := atid.AsHandle(); err == nil {
		return d.LookupHandle(ctx, h)
	}
	did, err := atid.AsDID()
	if err != nil {
		return nil, err
	}
	return d.LookupDID(ctx, did)
}

func (d *publicDirectory) Purge(context.Context, syntax.AtIdentifier) error { return nil }

// isMissingAccount reports whether a lookup error means the account does
// not exist (as opposed to a lookup that could not be completed).
func isMissingAccount(err error) bool {
	return errors.Is(err, identity.ErrHandleNotFound) || errors.Is(err, identity.ErrDIDNotFound) ||
		errors.Is(err, identity.ErrHandleReservedTLD) || errors.Is(err, identity.ErrHandleNotDeclared) ||
		errors.Is(err, identity.ErrHandleMismatch) || errors.Is(err, identity.ErrInvalidHandle) ||
		errors.Is(err, errReservedName)
}
