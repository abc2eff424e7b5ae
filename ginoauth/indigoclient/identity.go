package indigoclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

var _ oauthclient.IdentityChecker = (*Client)(nil)

// CheckIdentity implements oauthclient.IdentityChecker: the DID document
// afresh (the directory's cache is purged first), its declared handle
// resolved back to the DID, and the account's status at the PDS it names
// (com.atproto.sync.getRepoStatus, which needs no credentials). A DID that
// no longer resolves, or a PDS answering RepoNotFound, is a deleted
// account.
func (c *Client) CheckIdentity(ctx context.Context, did string) (oauthclient.Identity, error) {
	d, err := syntax.ParseDID(did)
	if err != nil {
		return oauthclient.Identity{}, err
	}
	_ = c.app.Dir.Purge(ctx, d.AtIdentifier())
	ident, err := c.app.Dir.LookupDID(ctx, d)
	if errors.Is(err, identity.ErrDIDNotFound) {
		return oauthclient.Identity{Handle: oauthclient.HandleInvalid, Status: oauthclient.StatusDeleted}, nil
	}
	if err != nil {
		return oauthclient.Identity{}, fmt.Errorf("indigoclient: resolving %s: %w", d, err)
	}
	out := oauthclient.Identity{Handle: oauthclient.HandleInvalid, PDS: strings.TrimRight(ident.PDSEndpoint(), "/")}
	if h, herr := ident.DeclaredHandle(); herr == nil {
		_ = c.app.Dir.Purge(ctx, h.AtIdentifier())
		back, lerr := c.app.Dir.LookupHandle(ctx, h)
		switch {
		case lerr == nil && back.DID == d:
			out.Handle = h.String()
		case lerr != nil && !isMissingAccount(lerr):
			return oauthclient.Identity{}, fmt.Errorf("indigoclient: resolving handle %s: %w", h, lerr)
		}
	}
	if out.PDS == "" {
		return out, nil // no PDS: nothing to log in to, nothing to ask
	}
	out.Status, err = c.repoStatus(ctx, out.PDS, d)
	return out, err
}

// repoStatus asks the PDS for the account's status: "" when active.
func (c *Client) repoStatus(ctx context.Context, pds string, did syntax.DID) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pds+"/xrpc/com.atproto.sync.getRepoStatus?did="+url.QueryEscape(did.String()), nil)
	if err != nil {
		return "", err
	}
	resp, err := c.app.Client.Do(req) //nolint:gosec // the PDS URL comes from the DID document; the default client refuses private addresses
	if err != nil {
		return "", fmt.Errorf("indigoclient: repo status: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Active *bool  `json:"active"`
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil {
		return "", fmt.Errorf("indigoclient: repo status: HTTP %d, unreadable answer: %w", resp.StatusCode, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK && body.Active != nil && *body.Active:
		return "", nil
	case resp.StatusCode == http.StatusOK && body.Active != nil:
		if body.Status == "" {
			return oauthclient.StatusDeactivated, nil
		}
		return body.Status, nil
	case resp.StatusCode == http.StatusBadRequest && body.Error == "RepoNotFound":
		return oauthclient.StatusDeleted, nil
	case resp.StatusCode == http.StatusBadRequest && body.Error == "RepoTakendown":
		return oauthclient.StatusTakendown, nil
	case resp.StatusCode == http.StatusBadRequest && body.Error == "RepoDeactivated":
		return oauthclient.StatusDeactivated, nil
	}
	return "", fmt.Errorf("indigoclient: repo status: HTTP %d %s", resp.StatusCode, body.Error)
}

// FollowPDS implements oauthclient.IdentityChecker. Under the session's
// refresh lock (so it never interleaves with a token save, and a save
// never writes the old PDS back: saves re-read the record), it reads the
// stored session, resolves the authorization server that protects pds,
// and when that is the session's own, stores the session with pds as its
// host. Another authorization server leaves the session unchanged and
// returns an error wrapping oauthclient.ErrAccountMoved.
func (c *Client) FollowPDS(ctx context.Context, did, sessionID, pds string) error {
	d, err := syntax.ParseDID(did)
	if err != nil {
		return gone(err)
	}
	pds = strings.TrimRight(pds, "/")
	held, err := c.lockWithin(ctx, refreshLockName(d, sessionID))
	if err != nil {
		return fmt.Errorf("indigoclient: waiting for the refresh lock: %w", err)
	}
	defer c.release(held)
	// The rewrite must not land after the lease could have lapsed.
	ctx, stop := held.Bind(ctx)
	defer stop()
	st, err := c.store.loadSession(ctx, d, sessionID)
	if errors.Is(err, storage.ErrNotFound) {
		return gone(err)
	}
	if err != nil {
		return err
	}
	if strings.TrimRight(st.Data.HostURL, "/") == pds {
		return nil
	}
	as, err := c.app.Resolver.ResolveAuthServerURL(ctx, pds)
	if err != nil {
		return fmt.Errorf("indigoclient: the new PDS's authorization server: %w", err)
	}
	if strings.TrimRight(as, "/") != strings.TrimRight(st.Data.AuthServerURL, "/") {
		return fmt.Errorf("%w: %s is protected by %s, the session's server is %s", oauthclient.ErrAccountMoved, pds, as, st.Data.AuthServerURL)
	}
	st.Data.HostURL = pds
	c.log.Info("OAuth session follows its account to a new PDS", "did", d, "session", shortHash(sessionID), "pds", pds)
	return c.store.put(ctx, st)
}
