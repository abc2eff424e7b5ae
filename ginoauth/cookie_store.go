package ginoauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-contrib/sessions"
	gsessions "github.com/gorilla/sessions"
)

// CookieStore is a gin-contrib/sessions Store whose cookies are sealed with
// AES-256-GCM (encrypted and authenticated in one step): the store the
// Manager keeps its own cookies with, which Manager.CookieStore hands to
// the app. It is a complete store: an app can use it with sessions.Sessions for its own sessions, next
// to the Manager, and read them with sessions.Default (it passes
// gin-contrib's own store test suite). String values take a compact path;
// other values (flashes, numbers, registered types) are gob-encoded.
//
// Sealing a session id costs about 2 µs and a handful of allocations,
// against some 34 µs and 200 allocations for the gob + securecookie codec of
// gin-contrib's default cookie store, and every authenticated request pays
// it.
//
// Key rotation: the first secret seals; every secret opens. Put a new secret
// first and keep the old ones until the longest cookie lifetime has passed.
// Each secret is stretched with HKDF-SHA256 into its own AES-256 key.
//
// The expiry (from Options.MaxAge at Save) is sealed inside the cookie and
// checked on read, so a copied cookie cannot outlive its lifetime even if a
// client ignores Max-Age, and lifetimes longer than 30 days work (gorilla's
// codec rejects those unless its own MaxAge is raised to match).
//
// The cookie name is bound into the seal as additional data, so a value
// sealed for one cookie is rejected under another name. When a request
// carries several cookies of one name (a sibling subdomain can plant
// extras), the first one that opens is used.
type CookieStore struct {
	aeads   []cipher.AEAD
	options sessions.Options
	now     func() time.Time
}

var _ sessions.Store = (*CookieStore)(nil)

// newCookieStore returns a CookieStore sealing with secret and also opening
// cookies sealed with any of oldSecrets. Every secret must be at least
// minSecretLength bytes. Default options: Path "/", HttpOnly, Secure,
// SameSite=Lax, no MaxAge (a browser-session cookie).
func newCookieStore(secret []byte, oldSecrets ...[]byte) (*CookieStore, error) {
	cs := &CookieStore{
		options: sessions.Options{Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode},
		now:     time.Now,
	}
	for i, s := range append([][]byte{secret}, oldSecrets...) {
		if len(s) < minSecretLength {
			return nil, &ConfigurationError{Field: "CookieSecret", Reason: fmt.Sprintf("secret %d is %d bytes; at least %d are required", i, len(s), minSecretLength)}
		}
		key, err := hkdf.Key(sha256.New, s, nil, "ginoauth cookie v1", 32)
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		cs.aeads = append(cs.aeads, aead)
	}
	return cs, nil
}

// Options sets the cookie options used for sessions created from now on.
func (cs *CookieStore) Options(o sessions.Options) { cs.options = o }

// Get returns the session stored in the request's cookie called name, or a
// new empty session. A cookie that is present but cannot be opened
// (tampered, foreign, or past its sealed expiry) gives a new session
// together with an error saying so.
func (cs *CookieStore) Get(r *http.Request, name string) (*gsessions.Session, error) {
	return cs.New(r, name)
}

// New is Get: the store keeps no per-request registry, since gin-contrib's
// middleware already keeps the session it loaded for the request.
func (cs *CookieStore) New(r *http.Request, name string) (*gsessions.Session, error) {
	s := gsessions.NewSession(cs, name)
	o := cs.options
	*s.Options = gsessions.Options{Path: o.Path, Domain: o.Domain, MaxAge: o.MaxAge, Secure: o.Secure, HttpOnly: o.HttpOnly, SameSite: o.SameSite}
	s.IsNew = true
	plain, err := cs.open(r, name)
	if err != nil || plain == nil {
		return s, err
	}
	if err := decodeValues(plain, s.Values); err != nil {
		clear(s.Values)
		return s, errCookieInvalid
	}
	s.IsNew = false
	return s, nil
}

// Save writes the session's cookie, or deletes it when Options.MaxAge < 0.
func (cs *CookieStore) Save(_ *http.Request, w http.ResponseWriter, s *gsessions.Session) error {
	opts := s.Options
	if opts == nil {
		opts = cs.options.ToGorillaOptions()
	}
	if opts.MaxAge < 0 {
		http.SetCookie(w, gsessions.NewCookie(s.Name(), "", opts))
		return nil
	}
	value, err := cs.seal(s.Name(), s.Values, cs.expiry(opts.MaxAge))
	if err != nil {
		return err
	}
	http.SetCookie(w, gsessions.NewCookie(s.Name(), value, opts))
	return nil
}
