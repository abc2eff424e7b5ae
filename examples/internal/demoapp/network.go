package demoapp

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
)

// DemoAccount is the account of the built-in offline network that the
// start page suggests. Its DID is fixed so that it stays the same across
// restarts of the demo.
var DemoAccount = struct{ Handle, DID, DisplayName string }{
	Handle:      "alice.test",
	DID:         "did:plc:alice2demo5account7local",
	DisplayName: "Alice Example",
}

// A second offline account, so the consent page's account field has a choice.
var secondAccount = struct{ Handle, DID, DisplayName string }{
	Handle:      "bob.test",
	DID:         "did:plc:bob2demo5account7localxx",
	DisplayName: "Bob Example",
}

// Network is the AT Protocol network the app logs in against: the real one,
// or a built-in authorization server + PDS (package ginoauthtest) on its own
// loopback port, with demo accounts, for offline use.
type Network struct {
	cfg   Config
	local *ginoauthtest.Server // nil on the real network
}

// StartNetwork returns the network cfg asks for, starting the built-in
// server in local mode. Close it when done.
func StartNetwork(cfg Config, log *slog.Logger) (*Network, error) {
	n := &Network{cfg: cfg}
	if cfg.Network != NetworkLocal {
		return n, nil
	}
	ln, err := net.Listen("tcp", cfg.LocalPDSAddr)
	if err != nil {
		return nil, fmt.Errorf("starting the built-in AT Protocol server on %s (%s): %w", cfg.LocalPDSAddr, EnvLocalPDSAddr, err)
	}
	srv := ginoauthtest.NewUnstartedServer(ginoauthtest.Options{Logger: log.With("component", "local-pds")})
	srv.CreateAccount(ginoauthtest.Account{Handle: syntax.Handle(DemoAccount.Handle), DID: syntax.DID(DemoAccount.DID), DisplayName: DemoAccount.DisplayName})
	srv.CreateAccount(ginoauthtest.Account{Handle: syntax.Handle(secondAccount.Handle), DID: syntax.DID(secondAccount.DID), DisplayName: secondAccount.DisplayName})
	srv.StartListener(ln)
	n.local = srv
	return n, nil
}

// Local returns the built-in server, or nil on the real network.
func (n *Network) Local() *ginoauthtest.Server { return n.local }

// IsLocal reports whether logins go to the built-in offline server.
func (n *Network) IsLocal() bool { return n.local != nil }

// ClientConfig returns indigo's OAuth client configuration for an app
// instance reachable at baseURL:
//
//   - with PUBLIC_URL, a public client whose client_id is the URL of the
//     metadata document the Manager serves, made confidential with
//     SetClientSecret when a client key is configured;
//   - otherwise a localhost development client (client_id
//     http://localhost?redirect_uri=...), which needs no metadata document and
//     whose redirect URI must be on 127.0.0.1. Its client_id leaves the port
//     out (loopback redirects match any port, RFC 8252 section 7.3), so all
//     instances on one machine are one client: a login made on one can be
//     refreshed and revoked by another.
func (n *Network) ClientConfig(baseURL string) (oauth.ClientConfig, error) {
	callback := baseURL + "/oauth/callback"
	if n.cfg.PublicURL == "" {
		return indigoclient.LocalhostConfig(callback, n.cfg.Scopes), nil
	}
	cc := oauth.NewPublicConfig(n.cfg.PublicURL+"/oauth-client-metadata.json", callback, n.cfg.Scopes)
	cc.UserAgent = "ginoauth-example"
	if n.cfg.ClientKey != nil {
		if err := cc.SetClientSecret(n.cfg.ClientKey, n.cfg.ClientKeyID); err != nil {
			return oauth.ClientConfig{}, &ConfigError{Var: EnvClientSecretKey, Reason: err.Error()}
		}
	}
	return cc, nil
}

// ClientOptions returns the indigoclient options for this network. On the
// real network they are the defaults: indigo's identity directory and an
// HTTP client that refuses private and loopback addresses (the endpoints it
// calls come from documents on the network). Offline, the client talks to
// the built-in server through its HTTP client and directory, and the
// browser is sent to the server's loopback address for the consent page.
func (n *Network) ClientOptions(log *slog.Logger) indigoclient.Options {
	opts := indigoclient.Options{Logger: log}
	if n.cfg.PublicURL != "" {
		name, home := "ginoauth example", n.cfg.PublicURL
		opts.Metadata = func(m *oauth.ClientMetadata) {
			m.ClientName = &name
			m.ClientURI = &home
		}
	}
	if n.local != nil {
		opts.HTTPClient = n.local.HTTPClient()
		opts.Directory = n.local.Directory()
		opts.BrowserURL = n.local.RewriteForBrowser
	}
	return opts
}

// LocalDomains are the names outside the public DNS that logins may use on
// this network (ginoauth.Config.LocalDomains): the built-in server's
// pds.test and its .test accounts offline; none on the real network.
func (n *Network) LocalDomains() []string {
	if n.local != nil {
		return []string{"test"}
	}
	return nil
}

// Describe is one line about the network, for the startup banner.
func (n *Network) Describe() string {
	switch {
	case n.local != nil:
		return fmt.Sprintf("built-in offline AT Protocol server (authorization server + PDS) at %s", n.local.URL())
	case n.cfg.PublicURL != "" && n.cfg.ClientKey != nil:
		return "the real AT Protocol network, as the confidential client " + n.cfg.PublicURL + "/oauth-client-metadata.json"
	case n.cfg.PublicURL != "":
		return "the real AT Protocol network, as the public client " + n.cfg.PublicURL + "/oauth-client-metadata.json"
	default:
		return "the real AT Protocol network (Bluesky), as a localhost development client"
	}
}

// Close stops the built-in server, if any.
func (n *Network) Close() {
	if n.local != nil {
		n.local.Close()
	}
}

// DescribeAccounts is a Config.DescribeAccounts for the account switcher:
// the display names of the offline network's demo accounts. A real app
// would fill in names and pictures from its own profile cache; the
// library fetches no profiles.
func DescribeAccounts(_ context.Context, accounts []ginoauth.Account) {
	for i := range accounts {
		for _, demo := range []struct{ Handle, DID, DisplayName string }{DemoAccount, secondAccount} {
			if accounts[i].DID == demo.DID {
				accounts[i].Name = demo.DisplayName
			}
		}
	}
}
