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
	"sync"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
)

var _ oauthclient.PermissionSetResolver = (*Client)(nil)

// permissionSetTTL is how long a resolved permission set is used before it
// is looked up again: the AT Protocol's recommended "stale" lifetime is a
// day, its firm lower bound the lifetime of an access token.
const permissionSetTTL = time.Hour

// maxPermissionSets bounds the cache of resolved sets.
const maxPermissionSets = 1024

// nsidResolver is what a Directory needs to resolve permission sets: the
// NSID's authority to the DID that publishes its lexicons (indigo's
// identity.BaseDirectory has it, through DNS; ginoauthtest's directory for
// the sets its server publishes).
type nsidResolver interface {
	ResolveNSID(ctx context.Context, nsid syntax.NSID) (syntax.DID, error)
}

type setEntry struct {
	perms   []string
	fetched time.Time
}

// permissionSets caches resolved permission sets.
type permissionSets struct {
	mu   sync.Mutex
	sets map[string]setEntry
}

// ResolvePermissionSet implements oauthclient.PermissionSetResolver: it looks
// the permission set nsid up as the AT Protocol publishes lexicons (the
// NSID's authority names a DID; the DID's PDS holds the lexicon as record
// com.atproto.lexicon.schema/<nsid>), through the Client's directory and
// HTTP client, and returns its permissions as scope strings, giving aud to
// the rpc permissions that inherit it. Sets are cached for an hour.
func (c *Client) ResolvePermissionSet(ctx context.Context, nsid, aud string) ([]string, error) {
	id, err := syntax.ParseNSID(nsid)
	if err != nil {
		return nil, fmt.Errorf("indigoclient: permission set %q: %w", nsid, err)
	}
	key := nsid + " " + aud
	c.sets.mu.Lock()
	e, ok := c.sets.sets[key]
	c.sets.mu.Unlock()
	if ok && time.Since(e.fetched) < permissionSetTTL {
		return e.perms, nil
	}
	perms, err := c.fetchPermissionSet(ctx, id, aud)
	if err != nil {
		if ok {
			return e.perms, nil // a stale set beats none when the lookup fails
		}
		return nil, err
	}
	c.sets.mu.Lock()
	if c.sets.sets == nil || len(c.sets.sets) >= maxPermissionSets {
		c.sets.sets = map[string]setEntry{}
	}
	c.sets.sets[key] = setEntry{perms: perms, fetched: time.Now()}
	c.sets.mu.Unlock()
	return perms, nil
}

func (c *Client) fetchPermissionSet(ctx context.Context, nsid syntax.NSID, aud string) ([]string, error) {
	r, ok := c.app.Dir.(nsidResolver)
	if !ok {
		if pd, isPublic := c.app.Dir.(*publicDirectory); isPublic {
			r = &pd.base
		} else {
			return nil, errors.New("indigoclient: the directory cannot resolve lexicon NSIDs")
		}
	}
	did, err := r.ResolveNSID(ctx, nsid)
	if err != nil {
		return nil, err
	}
	ident, err := c.app.Dir.LookupDID(ctx, did)
	if err != nil {
		return nil, err
	}
	q := url.Values{"repo": {did.String()}, "collection": {"com.atproto.lexicon.schema"}, "rkey": {nsid.String()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(ident.PDSEndpoint(), "/")+"/xrpc/com.atproto.repo.getRecord?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.app.Client.Do(req) //nolint:gosec // the PDS comes from the DID document; the default client refuses private addresses
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("indigoclient: permission set %s: HTTP %d", nsid, resp.StatusCode)
	}
	var rec struct {
		Value struct {
			ID   string `json:"id"`
			Defs struct {
				Main struct {
					Type        string `json:"type"`
					Permissions []struct {
						Resource   string   `json:"resource"`
						Collection []string `json:"collection"`
						Action     []string `json:"action"`
						LXM        []string `json:"lxm"`
						Aud        string   `json:"aud"`
						InheritAud bool     `json:"inheritAud"`
					} `json:"permissions"`
				} `json:"main"`
			} `json:"defs"`
		} `json:"value"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rec); err != nil {
		return nil, fmt.Errorf("indigoclient: permission set %s: %w", nsid, err)
	}
	main := rec.Value.Defs.Main
	if rec.Value.ID != nsid.String() || main.Type != "permission-set" {
		return nil, fmt.Errorf("indigoclient: %s is not a permission set", nsid)
	}
	var out []string
	for _, p := range main.Permissions {
		perm := auth.Permission{Resource: p.Resource, Collection: p.Collection, Action: p.Action, Endpoint: p.LXM, Audience: p.Aud}
		if p.Resource == "rpc" && p.InheritAud {
			if p.Aud != "" || aud == "" {
				continue // invalid per the spec: ignored
			}
			perm.Audience = aud
		}
		// Sets may only address their own namespace; anything else, and
		// anything this version does not understand, is ignored.
		if s := perm.ScopeString(); s != "" && inNamespace(nsid, perm) {
			if _, err := auth.ParsePermissionString(s); err == nil {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// inNamespace reports whether every NSID a permission names is under the
// permission set's group (the set's NSID without its last segment).
func inNamespace(set syntax.NSID, p auth.Permission) bool {
	group := strings.TrimSuffix(set.String(), "."+set.Name())
	for _, n := range append(append([]string{}, p.Collection...), p.Endpoint...) {
		if n != group && !strings.HasPrefix(n, group+".") {
			return false
		}
	}
	return true
}
