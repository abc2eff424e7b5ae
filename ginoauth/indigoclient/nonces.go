package indigoclient

import (
	"sync"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
)

// maxNonceOrigins bounds the nonce cache; when it is full it starts over,
// which costs each server one use_dpop_nonce round.
const maxNonceOrigins = 4096

// nonceCache holds the newest DPoP nonce this process has seen per server.
// A DPoP nonce belongs to a server, not to a session, so one learned by any
// session serves every session on that server. Keeping nonces out of
// storage keeps the token record free of writes that do not rotate tokens.
type nonceCache struct {
	mu   sync.Mutex
	host map[string]string // resource server (PDS) URL -> nonce
	as   map[string]string // authorization server URL -> nonce
}

func newNonceCache() *nonceCache {
	return &nonceCache{host: map[string]string{}, as: map[string]string{}}
}

// remember records the nonces in d.
func (n *nonceCache) remember(d *oauth.ClientSessionData) {
	n.mu.Lock()
	defer n.mu.Unlock()
	put := func(m map[string]string, origin, nonce string) {
		if origin == "" || nonce == "" {
			return
		}
		if _, ok := m[origin]; !ok && len(m) >= maxNonceOrigins {
			clear(m)
		}
		m[origin] = nonce
	}
	put(n.host, d.HostURL, d.DPoPHostNonce)
	put(n.as, d.AuthServerURL, d.DPoPAuthServerNonce)
}

// apply sets d's nonces to the newest known ones.
func (n *nonceCache) apply(d *oauth.ClientSessionData) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if v := n.host[d.HostURL]; v != "" {
		d.DPoPHostNonce = v
	}
	if v := n.as[d.AuthServerURL]; v != "" {
		d.DPoPAuthServerNonce = v
	}
}
