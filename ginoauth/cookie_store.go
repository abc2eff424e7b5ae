package ginoauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-contrib/sessions"
	gsessions "github.com/gorilla/sessions"
)

// MinSecretLength is the shortest cookie secret accepted, in bytes.
const MinSecretLength = 32

// maxCookieValue bounds what the store will try to decode: browsers cap a
// cookie near 4 KiB, so anything longer is hostile and is rejected before
// any base64 or AES work.
const maxCookieValue = 4096

const cookieFormatVersion = 1

// Errors a CookieStore reports for cookies it will not accept. The session
// returned alongside them is new and empty.
var (
	ErrCookieInvalid = errors.New("ginoauth: cookie is not valid (tampered, foreign key or malformed)")
	ErrCookieExpired = errors.New("ginoauth: cookie has passed its sealed expiry")
)

// CookieStore is a gin-contrib/sessions Store whose cookies are sealed with
// AES-256-GCM (encrypted and authenticated in one step). It holds string
// values only, which is all the Manager puts in a cookie: an opaque session
// id. Sealing a session id costs about 2 µs and a handful of allocations,
// against some 34 µs and 200 allocations for the gob + securecookie codec of
// gin-contrib's default cookie store, and every authenticated request pays it.
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
// sealed for one cookie is rejected under another name.
type CookieStore struct {
	aeads   []cipher.AEAD
	options sessions.Options
	now     func() time.Time
}

var _ sessions.Store = (*CookieStore)(nil)

// NewCookieStore returns a CookieStore sealing with secret and also opening
// cookies sealed with any of oldSecrets. Every secret must be at least
// MinSecretLength bytes. Default options: Path "/", HttpOnly, Secure,
// SameSite=Lax, no MaxAge (a browser-session cookie).
func NewCookieStore(secret []byte, oldSecrets ...[]byte) (*CookieStore, error) {
	cs := &CookieStore{
		options: sessions.Options{Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode},
		now:     time.Now,
	}
	for i, s := range append([][]byte{secret}, oldSecrets...) {
		if len(s) < MinSecretLength {
			return nil, &ConfigurationError{Field: "CookieSecret", Reason: fmt.Sprintf("secret %d is %d bytes; at least %d are required", i, len(s), MinSecretLength)}
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
// new empty session. A cookie that is present but cannot be opened gives a
// new session together with ErrCookieInvalid or ErrCookieExpired.
func (cs *CookieStore) Get(r *http.Request, name string) (*gsessions.Session, error) {
	return cs.New(r, name)
}

// New is Get: the store keeps no per-request registry because the Manager
// reads each cookie once per request.
func (cs *CookieStore) New(r *http.Request, name string) (*gsessions.Session, error) {
	s := gsessions.NewSession(cs, name)
	o := cs.options
	*s.Options = gsessions.Options{Path: o.Path, Domain: o.Domain, MaxAge: o.MaxAge, Secure: o.Secure, HttpOnly: o.HttpOnly, SameSite: o.SameSite}
	s.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return s, nil // no cookie: a new session, not an error
	}
	if err := cs.decode(name, c.Value, s.Values); err != nil {
		return s, err
	}
	s.IsNew = false
	return s, nil
}

// Save writes the session's cookie, or deletes it when Options.MaxAge < 0.
// Values must be strings keyed by strings.
func (cs *CookieStore) Save(_ *http.Request, w http.ResponseWriter, s *gsessions.Session) error {
	opts := s.Options
	if opts == nil {
		opts = cs.options.ToGorillaOptions()
	}
	if opts.MaxAge < 0 {
		http.SetCookie(w, gsessions.NewCookie(s.Name(), "", opts))
		return nil
	}
	var expires uint64
	if opts.MaxAge > 0 {
		expires = unixSeconds(cs.now().Add(time.Duration(opts.MaxAge) * time.Second))
	}
	value, err := cs.encode(s.Name(), s.Values, expires)
	if err != nil {
		return err
	}
	http.SetCookie(w, gsessions.NewCookie(s.Name(), value, opts))
	return nil
}

// encode lays out version | expiry (unix seconds, 0 = none) |
// (uvarint len, key, uvarint len, value)* and seals it as nonce || ciphertext,
// base64url without padding.
func (cs *CookieStore) encode(name string, values map[any]any, expires uint64) (string, error) {
	plain := make([]byte, 0, 64)
	plain = append(plain, cookieFormatVersion)
	plain = binary.BigEndian.AppendUint64(plain, expires)
	for k, v := range values {
		ks, ok1 := k.(string)
		vs, ok2 := v.(string)
		if !ok1 || !ok2 {
			return "", fmt.Errorf("ginoauth: CookieStore holds string keys and values only, got %T: %T", k, v)
		}
		plain = binary.AppendUvarint(plain, uint64(len(ks)))
		plain = append(plain, ks...)
		plain = binary.AppendUvarint(plain, uint64(len(vs)))
		plain = append(plain, vs...)
	}
	aead := cs.aeads[0]
	sealed := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(sealed); err != nil {
		return "", err
	}
	sealed = aead.Seal(sealed, sealed[:aead.NonceSize()], plain, []byte(name))
	if base64.RawURLEncoding.EncodedLen(len(sealed)) > maxCookieValue {
		return "", errors.New("ginoauth: session values too large for a cookie")
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

func (cs *CookieStore) decode(name, value string, into map[any]any) error {
	if value == "" || len(value) > maxCookieValue {
		return ErrCookieInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return ErrCookieInvalid
	}
	var plain []byte
	for _, aead := range cs.aeads {
		ns := aead.NonceSize()
		if len(raw) < ns+aead.Overhead() {
			return ErrCookieInvalid
		}
		// Open into a fresh slice: raw must stay intact for the next key.
		if p, err := aead.Open(nil, raw[:ns], raw[ns:], []byte(name)); err == nil {
			plain = p
			break
		}
	}
	if len(plain) < 9 || plain[0] != cookieFormatVersion {
		return ErrCookieInvalid
	}
	if expires := binary.BigEndian.Uint64(plain[1:9]); expires != 0 && unixSeconds(cs.now()) >= expires {
		return ErrCookieExpired
	}
	rest := plain[9:]
	for len(rest) > 0 {
		k, n := readChunk(rest)
		if n <= 0 {
			return ErrCookieInvalid
		}
		rest = rest[n:]
		v, m := readChunk(rest)
		if m <= 0 {
			return ErrCookieInvalid
		}
		rest = rest[m:]
		into[k] = v
	}
	return nil
}

// readChunk reads one uvarint-prefixed string; n <= 0 means malformed.
func readChunk(b []byte) (string, int) {
	l, n := binary.Uvarint(b)
	if n <= 0 {
		return "", 0
	}
	rest := b[n:]
	if l > uint64(len(rest)) { //nolint:gosec // a length is never negative
		return "", 0
	}
	return string(rest[:l]), n + int(l) //nolint:gosec // l <= len(rest), so it fits an int
}

// unixSeconds is t as non-negative Unix seconds (times before 1970 are 0).
func unixSeconds(t time.Time) uint64 {
	return uint64(max(t.Unix(), 0)) //nolint:gosec // clamped to non-negative
}
