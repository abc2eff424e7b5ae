package ginoauth

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
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

// Plaintext formats. Version 1 holds string keys and values in a compact
// layout (all the Manager stores, and the common case for apps); version 2
// holds anything encoding/gob can, as gin-contrib's default cookie store
// does (register your own types with gob.Register).
const (
	cookieFormatStrings = 1
	cookieFormatGob     = 2
)

// b64 is the cookie value encoding: base64url without padding, strict, so
// that one value has exactly one spelling.
var b64 = base64.RawURLEncoding.Strict()

// Errors a CookieStore reports for cookies it will not accept. The session
// returned alongside them is new and empty.
var (
	ErrCookieInvalid = errors.New("ginoauth: cookie is not valid (tampered, foreign key or malformed)")
	ErrCookieExpired = errors.New("ginoauth: cookie has passed its sealed expiry")
)

// CookieStore is a gin-contrib/sessions Store whose cookies are sealed with
// AES-256-GCM (encrypted and authenticated in one step). It is a complete
// store: an app can use it with sessions.Sessions for its own sessions, next
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
		return s, ErrCookieInvalid
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

// expiry is the sealed expiry for a cookie of maxAge seconds (0: none).
func (cs *CookieStore) expiry(maxAge int) uint64 {
	if maxAge <= 0 {
		return 0
	}
	return unixSeconds(cs.now().Add(time.Duration(maxAge) * time.Second))
}

// seal encodes values and seals them for the cookie called name.
func (cs *CookieStore) seal(name string, values map[any]any, expires uint64) (string, error) {
	plain, err := encodeValues(values, expires)
	if err != nil {
		return "", err
	}
	aead := cs.aeads[0]
	sealed := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(sealed); err != nil {
		return "", err
	}
	sealed = aead.Seal(sealed, sealed[:aead.NonceSize()], plain, []byte(name))
	if b64.EncodedLen(len(sealed)) > maxCookieValue {
		return "", errors.New("ginoauth: session values too large for a cookie")
	}
	return b64.EncodeToString(sealed), nil
}

// open returns the plaintext of the request's cookie called name, after its
// expiry check; nil with a nil error when there is no such cookie. Of
// several cookies with that name, the first that opens is used; if none
// does, the error says why the last one failed.
func (cs *CookieStore) open(r *http.Request, name string) ([]byte, error) {
	var err error
	for _, c := range r.CookiesNamed(name) {
		var plain []byte
		if plain, err = cs.openValue(name, c.Value); err == nil {
			return plain, nil
		}
	}
	return nil, err
}

func (cs *CookieStore) openValue(name, value string) ([]byte, error) {
	plain, err := cs.openString(name, value)
	if err != nil {
		return nil, err
	}
	return []byte(plain), nil
}

// bufPool holds buffers for decoding and opening cookies, which every
// request does: the plaintext leaves them as one string.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// openString is openValue with the plaintext as a string, in one
// allocation.
func (cs *CookieStore) openString(name, value string) (string, error) {
	if value == "" || len(value) > maxCookieValue {
		return "", ErrCookieInvalid
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	// One buffer: the encoded value, then its decoding.
	need := len(value) + b64.DecodedLen(len(value))
	if cap(*bp) < need {
		*bp = make([]byte, need)
	}
	buf := (*bp)[:need]
	enc := buf[:copy(buf, value)]
	n, err := b64.Decode(buf[len(value):], enc)
	if err != nil {
		return "", ErrCookieInvalid
	}
	raw := buf[len(value) : len(value)+n]
	var plain []byte
	for i, aead := range cs.aeads {
		ns := aead.NonceSize()
		if len(raw) < ns+aead.Overhead() {
			return "", ErrCookieInvalid
		}
		if i == len(cs.aeads)-1 { // the last key may open in place
			if p, err := aead.Open(raw[ns:ns], raw[:ns], raw[ns:], []byte(name)); err == nil {
				plain = p
			}
			break
		}
		// Earlier keys open into a second buffer: raw must stay intact.
		if p, err := aead.Open(nil, raw[:ns], raw[ns:], []byte(name)); err == nil {
			plain = p
			break
		}
	}
	if len(plain) < 9 || (plain[0] != cookieFormatStrings && plain[0] != cookieFormatGob) {
		return "", ErrCookieInvalid
	}
	if expires := binary.BigEndian.Uint64(plain[1:9]); expires != 0 && unixSeconds(cs.now()) >= expires {
		return "", ErrCookieExpired
	}
	return string(plain), nil
}

// stringValue is the Manager's fast path: the string under key in the
// request's cookie called name, without building a session. ok is false
// when there is no cookie; err is ErrCookieInvalid or ErrCookieExpired.
func (cs *CookieStore) stringValue(r *http.Request, name, key string) (value string, ok bool, err error) {
	v, _, ok, err := cs.stringValues(r, name, key, "")
	return v, ok, err
}

// stringValues is stringValue for two keys of one cookie, opened once; the
// second key may be absent (then its value is ""), the first may not.
func (cs *CookieStore) stringValues(r *http.Request, name, key1, key2 string) (v1, v2 string, ok bool, err error) {
	var plain string
	eachCookie(r, name, func(value string) bool {
		ok = true
		plain, err = cs.openString(name, value)
		return err == nil
	})
	if !ok || err != nil {
		return "", "", ok, err
	}
	if plain[0] != cookieFormatStrings {
		return "", "", true, ErrCookieInvalid
	}
	found := false
	err = walkStrings(plain[9:], func(k, v string) {
		switch k {
		case key1:
			v1, found = v, true
		case key2:
			v2 = v
		}
	})
	if err != nil || !found {
		return "", "", true, ErrCookieInvalid
	}
	return v1, v2, true, nil
}

// eachCookie calls f with the value of each cookie called name in the
// request's Cookie headers, in order, until f returns true, reading the
// values as net/http's parser does but without building a Cookie for every
// cookie of the request.
func eachCookie(r *http.Request, name string, f func(value string) bool) {
	for _, line := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			part = textproto.TrimString(part)
			k, v, found := strings.Cut(part, "=")
			if !found || k != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if f(v) {
				return
			}
		}
	}
}

// setStrings seals values (string pairs) into the cookie called name, with
// opts.
func (cs *CookieStore) setStrings(w http.ResponseWriter, name string, values map[any]any, opts sessions.Options) error {
	value, err := cs.seal(name, values, cs.expiry(opts.MaxAge))
	if err != nil {
		return err
	}
	http.SetCookie(w, gsessions.NewCookie(name, value, opts.ToGorillaOptions()))
	return nil
}

// encodeValues lays out version | expiry (unix seconds, 0 = none) | body,
// where the body of version 1 is (uvarint len, key, uvarint len, value)*
// and that of version 2 a gob-encoded map.
func encodeValues(values map[any]any, expires uint64) ([]byte, error) {
	plain := make([]byte, 9, 64)
	plain[0] = cookieFormatStrings
	binary.BigEndian.PutUint64(plain[1:9], expires)
	for k, v := range values {
		ks, ok1 := k.(string)
		vs, ok2 := v.(string)
		if !ok1 || !ok2 {
			return encodeGob(values, plain[:9])
		}
		plain = binary.AppendUvarint(plain, uint64(len(ks)))
		plain = append(plain, ks...)
		plain = binary.AppendUvarint(plain, uint64(len(vs)))
		plain = append(plain, vs...)
	}
	return plain, nil
}

func encodeGob(values map[any]any, header []byte) ([]byte, error) {
	header[0] = cookieFormatGob
	buf := bytes.NewBuffer(header)
	if err := gob.NewEncoder(buf).Encode(values); err != nil {
		return nil, fmt.Errorf("ginoauth: session values cannot be encoded (register custom types with gob.Register): %w", err)
	}
	return buf.Bytes(), nil
}

// decodeValues fills into from a plaintext that passed openValue.
func decodeValues(plain []byte, into map[any]any) error {
	if plain[0] == cookieFormatGob {
		var m map[any]any
		// plain passed AES-GCM authentication: only a cookie this store
		// sealed gets here.
		if err := gob.NewDecoder(bytes.NewReader(plain[9:])).Decode(&m); err != nil { //nolint:gosec // G709: see above
			return err
		}
		for k, v := range m {
			into[k] = v
		}
		return nil
	}
	return walkStrings(string(plain[9:]), func(k, v string) { into[k] = v })
}

// walkStrings calls f for each pair of a version 1 body; a malformed body
// or a repeated key is an error. The strings f gets share rest's memory.
func walkStrings(rest string, f func(k, v string)) error {
	var small [8]string // the keys seen, without an allocation for small cookies
	seen := small[:0]
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
		for _, s := range seen {
			if s == k {
				return ErrCookieInvalid
			}
		}
		seen = append(seen, k)
		f(k, v)
	}
	return nil
}

// readChunk reads one uvarint-prefixed string; n <= 0 means malformed.
func readChunk(b string) (string, int) {
	var l uint64
	n := 0
	for shift := uint(0); ; shift += 7 {
		if n >= len(b) || shift >= 64 {
			return "", 0
		}
		c := b[n]
		n++
		l |= uint64(c&0x7f) << shift
		if c < 0x80 {
			break
		}
	}
	rest := b[n:]
	if l > uint64(len(rest)) { //nolint:gosec // a length is never negative
		return "", 0
	}
	return rest[:l], n + int(l) //nolint:gosec // l <= len(rest), so it fits an int
}

// unixSeconds is t as non-negative Unix seconds (times before 1970 are 0).
func unixSeconds(t time.Time) uint64 {
	return uint64(max(t.Unix(), 0)) //nolint:gosec // clamped to non-negative
}
