package ginoauth

import (
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// A login names a host: the handle's domain, a did:web's host, or the
// server= it starts at. Names outside the public DNS are refused with 400
// before any network call, whatever HTTP client or identity directory the
// app configured, so a login form cannot make the app probe its own
// network (SSRF): IP addresses, single labels, and names under a suffix
// that is reserved (RFC 6761, RFC 8375, the AT Protocol handle spec) or in
// common use inside private networks. Config.LocalDomains lists the
// exceptions an app makes on purpose, such as a local test server.

// nonPublicTLDs are the last labels of names that no public service has.
var nonPublicTLDs = []string{
	"alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion", "test", // reserved
	"corp", "home", "intranet", "lan", "localdomain", "private", // private networks by convention
}

// dnsName matches a lower-case DNS name (Config.LocalDomains entries).
var dnsName = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// publicName reports whether a login may name host: a public DNS name, or
// one under an entry of Config.LocalDomains.
func (m *Manager) publicName(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, d := range m.cfg.LocalDomains {
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	if host == "" || net.ParseIP(strings.Trim(host, "[]")) != nil {
		return false
	}
	labels := strings.Split(host, ".")
	return len(labels) >= 2 && !slices.Contains(nonPublicTLDs, labels[len(labels)-1])
}

// identifierHost is the host a normalised handle or DID names: the handle
// itself, a did:web's host; "" for a DID method with no host (did:plc).
func identifierHost(ident string) string {
	web, ok := strings.CutPrefix(ident, "did:web:")
	if !ok {
		if strings.HasPrefix(ident, "did:") {
			return ""
		}
		return ident
	}
	host, _, _ := strings.Cut(web, ":") // did:web paths follow a colon
	if h, err := url.PathUnescape(host); err == nil {
		host = h
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h // an encoded port
	}
	return host
}

// checkLoginNames refuses a login whose identifier or server names a host
// that is not public (see publicName).
func (m *Manager) checkLoginNames(identifier, server string) error {
	if server != "" {
		if u, err := url.Parse(server); err != nil || !m.publicName(u.Hostname()) {
			return &OAuthFlowError{Code: CodeInvalidRequest, Message: "that server is not a public internet address; use one such as https://bsky.social"}
		}
	}
	hostless := identifier == "" || strings.HasPrefix(identifier, "did:") && !strings.HasPrefix(identifier, "did:web:")
	if !hostless && !m.publicName(identifierHost(identifier)) {
		return &OAuthFlowError{Code: CodeInvalidHandle, Message: "that handle is not a public internet name; a handle looks like alice.bsky.social"}
	}
	return nil
}
