package indigoclient

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// This file holds a confidential client's signing keys. The authorization
// server binds each OAuth session to the key (kid) that authenticated its
// login and refuses assertions signed with any other key for it, and it
// revokes the sessions whose key leaves the client's metadata. So:
//
//   - every login is signed with the current key, and the session records
//     the kid it is bound to (storedSession.KeyID; the pending login too,
//     storedAuthRequest.ClientKeyID), and every later assertion for it
//     (refresh, revocation) is signed with that key;
//   - every login and session is a member of its key's index set
//     (oauth:key:{kid}, a storage.Indexer set with the session's expiry), so
//     any instance can tell which keys live sessions use;
//   - the metadata publishes the current and next keys and the previous ones
//     a live session or login in progress still uses, and never a retired
//     one; over-publishing is harmless, under-publishing makes the server
//     revoke sessions, so every doubt (a storage error, no Indexer) publishes;
//   - a retired key signs nothing but the revocation of its own sessions,
//     which the Manager ends (oauthclient.KeyRetirement).
//
// Instances learn nothing from each other: each acts on the key set of its
// own configuration, and the states are chosen so that instances one step
// apart (during a rolling deploy) are safe together. See the README,
// "Rotating the client key".

// KeyState is the role of one key in a KeySet.
type KeyState string

// The states of a client key, in the order a key goes through them.
const (
	// KeyNext: published, so that authorization servers (and every instance)
	// know it before any login uses it; signs only for sessions bound to it
	// (after a rollback).
	KeyNext KeyState = "next"
	// KeyCurrent: signs every new login, and its sessions. Exactly one key
	// of a KeySet is current.
	KeyCurrent KeyState = "current"
	// KeyPrevious: signs for the sessions bound to it, and is published
	// while any of them (or a login started with it) is live.
	KeyPrevious KeyState = "previous"
	// KeyRetired: never published; signs only the revocation of its own
	// sessions, which are ended (Key may be nil if the private key is gone:
	// the sessions then end without a revocation request).
	KeyRetired KeyState = "retired"
)

// ClientKey is one private key of a confidential client.
type ClientKey struct {
	// ID is the key id (kid) published in the JWKS and sent in every client
	// assertion signed with the key. Choose a new one for every key (a date
	// works: "2026-12"); a kid is never reused for another key.
	ID string
	// Key is the P-256 private key (see ParsePrivateKey).
	Key atcrypto.PrivateKey
	// State is the key's role.
	State KeyState
}

// KeySet is the signing keys of a confidential client, for Options.Keys.
// Make it with NewKeySet; it is immutable and safe for concurrent use.
type KeySet struct {
	keys    []ClientKey
	byID    map[string]*ClientKey
	current *ClientKey
}

// NewKeySet checks keys and returns them as a KeySet: every key has an ID
// (printable, at most 200 bytes) used once, a P-256 private key (a retired
// key may have none) and a State, and exactly one key is KeyCurrent.
func NewKeySet(keys ...ClientKey) (*KeySet, error) {
	ks := &KeySet{keys: make([]ClientKey, len(keys)), byID: map[string]*ClientKey{}}
	copy(ks.keys, keys)
	for i := range ks.keys {
		k := &ks.keys[i]
		if err := checkKeyID(k.ID); err != nil {
			return nil, err
		}
		if _, dup := ks.byID[k.ID]; dup {
			return nil, fmt.Errorf("indigoclient: client key %q is listed twice", k.ID)
		}
		ks.byID[k.ID] = k
		switch k.State {
		case KeyNext, KeyPrevious, KeyRetired:
		case KeyCurrent:
			if ks.current != nil {
				return nil, fmt.Errorf("indigoclient: client keys %q and %q are both current; exactly one key signs new logins", ks.current.ID, k.ID)
			}
			ks.current = k
		case "":
			return nil, fmt.Errorf("indigoclient: client key %q has no State (next, current, previous or retired)", k.ID)
		default:
			return nil, fmt.Errorf("indigoclient: client key %q: unknown State %q (want next, current, previous or retired)", k.ID, k.State)
		}
		switch k.Key.(type) {
		case *atcrypto.PrivateKeyP256:
		case nil:
			if k.State != KeyRetired {
				return nil, fmt.Errorf("indigoclient: client key %q has no private key (only a retired key may have none)", k.ID)
			}
		default:
			return nil, fmt.Errorf("indigoclient: client key %q: a %T; %s", k.ID, k.Key, notP256)
		}
	}
	if ks.current == nil {
		return nil, errors.New("indigoclient: no client key is current; exactly one key signs new logins")
	}
	return ks, nil
}

// checkKeyID: a kid goes into JWKS documents, JWT headers and storage set
// names, so it is kept to printable text.
func checkKeyID(id string) error {
	if id == "" {
		return errors.New("indigoclient: a client key has no ID (kid)")
	}
	if len(id) > 200 || !utf8.ValidString(id) || strings.IndexFunc(id, func(r rune) bool { return !unicode.IsPrint(r) || r == ' ' }) >= 0 {
		return fmt.Errorf("indigoclient: client key id %q: want at most 200 printable characters without spaces", id)
	}
	return nil
}

// Current returns the key that signs new logins.
func (ks *KeySet) Current() ClientKey { return *ks.current }

// Keys returns the keys, in the order NewKeySet got them.
func (ks *KeySet) Keys() []ClientKey { return append([]ClientKey(nil), ks.keys...) }

// keySetOf is the key set a Client uses: opts.Keys, or the single key of
// config (SetClientSecret) as current, or nil for a public client; and the
// legacy kid, which sessions stored before key sets (recording no kid) are
// bound to: config's key id, else the current key's.
func keySetOf(config oauth.ClientConfig, opts Options) (*KeySet, string) {
	ks := opts.Keys
	if ks == nil {
		if !config.IsConfidential() {
			return nil, ""
		}
		ck := ClientKey{ID: *config.KeyID, Key: config.PrivateKey, State: KeyCurrent}
		ks = &KeySet{keys: []ClientKey{ck}, byID: map[string]*ClientKey{}}
		ks.current = &ks.keys[0]
		ks.byID[ck.ID] = ks.current
	}
	legacy := ks.current.ID
	if config.KeyID != nil && *config.KeyID != "" {
		legacy = *config.KeyID
	}
	return ks, legacy
}

// Why a key cannot sign.
var (
	// errKeyNotHeld: the session is bound to a key this instance does not
	// hold. Not the end of the login: another instance (or this one, after
	// a deploy) may hold it.
	errKeyNotHeld = errors.New("indigoclient: the session's client key is not configured on this instance; deploy the same key set to every instance")
)

// keyFor returns the key a session or login bound to kid signs with. kid ""
// (stored before key sets) means the legacy key. A retired key gives an
// error wrapping oauthclient.ErrKeyRetired unless revoking is set: a
// retired key still signs the revocation of its own sessions.
func (c *Client) keyFor(kid string, revoking bool) (*ClientKey, error) {
	kid = c.sessionKID(kid)
	k := c.keys.byID[kid]
	switch {
	case k == nil:
		return nil, fmt.Errorf("%w (key %q)", errKeyNotHeld, kid)
	case k.State == KeyRetired && !revoking:
		return nil, fmt.Errorf("indigoclient: client key %q: %w", kid, oauthclient.ErrKeyRetired)
	case k.Key == nil:
		return nil, fmt.Errorf("indigoclient: client key %q is retired and its private key is gone: the revocation cannot be signed", kid)
	}
	return k, nil
}

// sessionKID is the kid a stored session or login is bound to: the one it
// recorded, else (stored before key sets) the legacy key.
func (c *Client) sessionKID(recorded string) string {
	if recorded != "" || c.keys == nil {
		return recorded
	}
	return c.legacyKID
}

// clientAssertion signs a client assertion for issuer with k, with indigo's
// own signer (a copy of the config that holds k instead of the current key).
func (c *Client) clientAssertion(k *ClientKey, issuer string) (string, error) {
	cfg := *c.app.Config
	cfg.PrivateKey = k.Key
	kid := k.ID
	cfg.KeyID = &kid
	return cfg.NewClientAssertion(issuer)
}

// The key index: a storage.Indexer set per kid. Members are a session
// ("{did} {session id}") or a login in progress ("login {state}"); both
// expire with what they stand for.
const (
	keyIndexPrefix    = "oauth:key:"
	pendingMemberPref = "login "
)

func keyIndexSet(kid string) string { return keyIndexPrefix + kid }

func sessionMember(did syntax.DID, sessionID string) string {
	return did.String() + " " + sessionID
}

// indexer is the Storage's Indexer, or nil.
func (c *Client) indexer() storage.Indexer {
	ix, _ := c.store.storage.(storage.Indexer)
	return ix
}

// indexKey adds member to kid's set for ttl. A failure fails what is being
// bound (a login, a session): a key whose use is not recorded could be
// dropped from the metadata while its session lives.
func (c *Client) indexKey(ctx context.Context, kid, member string, ttl time.Duration) error {
	ix := c.indexer()
	if c.keys == nil || ix == nil || kid == "" {
		return nil
	}
	ctx, cancel := c.store.op(ctx)
	defer cancel()
	err := storage.Wrap("add-member", ix.AddMember(ctx, keyIndexSet(kid), member, ttl))
	if err == nil {
		c.keyUse.used(kid)
	}
	return err
}

// unindexKey removes member from kid's set (every key's set when kid is
// ""). Failures only leave a member that expires by itself; the key stays
// published a little longer.
func (c *Client) unindexKey(ctx context.Context, kid, member string) {
	ix := c.indexer()
	if c.keys == nil || ix == nil {
		return
	}
	for _, k := range c.keys.keys {
		if kid != "" && k.ID != kid {
			continue
		}
		octx, cancel := c.store.op(ctx)
		if err := ix.RemoveMember(octx, keyIndexSet(k.ID), member); err != nil {
			c.log.Warn("removing a session from its client key's index failed; it expires with the session", "kid", k.ID, "err", err)
		}
		cancel()
	}
}

// How long an instance trusts what it read of a key's use. A key seen in use
// stays published for keyInUseTTL without another read (publishing a key a
// little longer is harmless); a key seen unused is read again after
// keyUnusedTTL, so that a login another instance starts with it is seen
// before the authorization server fetches the metadata to check that login.
const (
	keyInUseTTL  = time.Minute
	keyUnusedTTL = time.Second
)

// keyUseCache remembers, per kid, whether a live session or login uses it.
type keyUseCache struct {
	mu   sync.Mutex
	seen map[string]keyUse
}

type keyUse struct {
	inUse bool
	at    time.Time
}

func (u *keyUseCache) get(kid string, now time.Time) (inUse, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	e, found := u.seen[kid]
	if !found {
		return false, false
	}
	ttl := keyUnusedTTL
	if e.inUse {
		ttl = keyInUseTTL
	}
	return e.inUse, now.Sub(e.at) < ttl
}

func (u *keyUseCache) put(kid string, inUse bool, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen == nil {
		u.seen = map[string]keyUse{}
	}
	u.seen[kid] = keyUse{inUse: inUse, at: now}
}

// used notes that this instance just bound something to kid.
func (u *keyUseCache) used(kid string) { u.put(kid, true, time.Now()) }

// keyInUse reports whether a live session or login is bound to kid. Without
// an Indexer, or when storage fails, it answers true: see the top of this
// file.
func (c *Client) keyInUse(ctx context.Context, kid string) bool {
	ix := c.indexer()
	if ix == nil {
		return true
	}
	now := time.Now()
	if inUse, ok := c.keyUse.get(kid, now); ok {
		return inUse
	}
	ctx, cancel := c.store.op(ctx)
	defer cancel()
	members, err := ix.Members(ctx, keyIndexSet(kid))
	if err != nil {
		c.log.Warn("could not tell whether a client key is in use; publishing it", "kid", kid, "err", err)
		return true
	}
	inUse := len(members) > 0
	c.keyUse.put(kid, inUse, now)
	return inUse
}

// publishedKeys are the keys the metadata publishes: current and next
// keys, previous keys still in use (and the legacy key, whose sessions
// stored before key sets are in no index), never a retired key.
func (c *Client) publishedKeys(ctx context.Context) []*ClientKey {
	if c.keys == nil {
		return nil
	}
	var out []*ClientKey
	for i := range c.keys.keys {
		k := &c.keys.keys[i]
		switch {
		case k.State == KeyRetired:
		case k.State == KeyCurrent, k.State == KeyNext, k.ID == c.legacyKID, c.keyInUse(ctx, k.ID):
			out = append(out, k)
		}
	}
	return out
}

// publicJWKS is the JWKS of the published keys: public members only.
func (c *Client) publicJWKS(ctx context.Context) oauth.JWKS {
	set := oauth.JWKS{Keys: []atcrypto.JWK{}}
	for _, k := range c.publishedKeys(ctx) {
		if jwk, err := publicJWK(k); err == nil {
			set.Keys = append(set.Keys, jwk)
		}
	}
	return set
}

// publicJWK is k's public JWK with full-length (32 byte) coordinates, as
// RFC 7518 requires (atcrypto's JWK drops leading zero bytes). Built from
// the public key alone, it cannot carry a private member.
func publicJWK(k *ClientKey) (atcrypto.JWK, error) {
	pub, err := k.Key.PublicKey()
	if err != nil {
		return atcrypto.JWK{}, err
	}
	raw := pub.UncompressedBytes() // 0x04 || X || Y
	if len(raw) != 65 {
		return atcrypto.JWK{}, errors.New("indigoclient: unexpected P-256 public key length")
	}
	kid := k.ID
	return atcrypto.JWK{
		KeyType: "EC", Curve: "P-256", Use: "sig", KeyID: &kid,
		X: base64.RawURLEncoding.EncodeToString(raw[1:33]),
		Y: base64.RawURLEncoding.EncodeToString(raw[33:65]),
	}, nil
}

// KeyUsage is what KeyUsage reports for one client key.
type KeyUsage struct {
	ID    string
	State KeyState
	// Sessions counts the live OAuth sessions bound to the key. Sessions
	// stored before key sets record no key and are not counted.
	Sessions int
	// Logins counts logins in progress started with the key.
	Logins int
	// Published reports whether the metadata publishes the key now.
	Published bool
}

// KeyUsage reports, for each key of the client's key set, how many live
// sessions are bound to it and whether it is published: a previous key
// whose Sessions and Logins are 0 has left the metadata and can be retired
// without ending anyone's login. It reads every key's index in full (one
// storage.Indexer read per key), so it is meant for operators, not for
// every request. It needs a Storage with an Indexer; a public client has no
// keys.
func (c *Client) KeyUsage(ctx context.Context) ([]KeyUsage, error) {
	if c.keys == nil {
		return nil, nil
	}
	ix := c.indexer()
	if ix == nil {
		return nil, errors.New("indigoclient: the Storage has no storage.Indexer, which counting the sessions of each client key needs")
	}
	published := map[string]bool{}
	for _, k := range c.publishedKeys(ctx) {
		published[k.ID] = true
	}
	out := make([]KeyUsage, 0, len(c.keys.keys))
	for _, k := range c.keys.keys {
		octx, cancel := c.store.op(ctx)
		members, err := ix.Members(octx, keyIndexSet(k.ID))
		cancel()
		if err != nil {
			return nil, storage.Wrap("members", err)
		}
		u := KeyUsage{ID: k.ID, State: k.State, Published: published[k.ID]}
		for _, m := range members {
			if strings.HasPrefix(m, pendingMemberPref) {
				u.Logins++
			} else {
				u.Sessions++
			}
		}
		out = append(out, u)
	}
	return out, nil
}

var _ oauthclient.KeyRetirement = (*Client)(nil)

// SessionsOfRetiredKeys implements oauthclient.KeyRetirement: the OAuth
// sessions in the index of each retired key (logins in progress are left
// out: their callback refuses the retired key).
func (c *Client) SessionsOfRetiredKeys(ctx context.Context) ([]oauthclient.SessionRef, error) {
	if c.keys == nil {
		return nil, nil
	}
	var out []oauthclient.SessionRef
	for _, k := range c.keys.keys {
		if k.State != KeyRetired {
			continue
		}
		ix := c.indexer()
		if ix == nil {
			return nil, errors.New("indigoclient: the Storage has no storage.Indexer, so the sessions of a retired key can only be ended when they are used")
		}
		octx, cancel := c.store.op(ctx)
		members, err := ix.Members(octx, keyIndexSet(k.ID))
		cancel()
		if err != nil {
			return nil, storage.Wrap("members", err)
		}
		for _, m := range members {
			did, id, ok := strings.Cut(m, " ")
			if !ok || strings.HasPrefix(m, pendingMemberPref) {
				continue
			}
			out = append(out, oauthclient.SessionRef{DID: did, SessionID: id})
		}
	}
	return out, nil
}
