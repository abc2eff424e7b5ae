package ginoauth

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-contrib/sessions"
	gsessions "github.com/gorilla/sessions"
)

// The cookie format. A cookie value is base64url (no padding, strict) of
// nonce | AES-256-GCM(plaintext), sealed with the cookie's name as
// additional data, so a value sealed for one cookie is rejected under
// another name. The plaintext is version | expiry | body: the expiry (Unix
// seconds, 0 = none) is checked on every read, so a copied cookie cannot
// outlive its lifetime even if a client ignores Max-Age. Version 1 bodies
// hold string pairs in a compact layout (everything the Manager stores);
// version 2 bodies hold anything encoding/gob can, for apps that use the
// CookieStore for their own sessions.
//
// The Manager's cookies:
//
//	<CookieName>        the session cookie: {sid: the active account's session id,
//	                    a: its last activity (Unix seconds), o: the browser's other
//	                    accounts (see accounts.go), absent with one account}
//	<CookieName>_flow   the flow cookie:    {b: browser binding, t: when it was made}
//	                    (always host-only, and __Host-<name>_flow on https)

// maxCookieValue bounds what will be decoded: browsers cap a cookie near
// 4 KiB, so anything longer is hostile and is rejected before any base64
// or AES work.
const maxCookieValue = 4096

// Plaintext versions.
const (
	cookieFormatStrings = 1
	cookieFormatGob     = 2
)

// Keys inside the Manager's sealed cookies.
const (
	cookieSessionID    = "sid"
	cookieActive       = "a" // last activity, Unix seconds, for IdleTimeout
	cookieOthers       = "o" // the other accounts' session ids and last activity
	cookieBinding      = "b"
	cookieBindingSince = "t"
)

// b64 is the cookie value encoding: base64url without padding, strict, so
// that one value has exactly one spelling.
var b64 = base64.RawURLEncoding.Strict()

// Why a cookie is not accepted.
var (
	errCookieInvalid = errors.New("ginoauth: cookie is not valid (tampered, foreign key or malformed)")
	errCookieExpired = errors.New("ginoauth: cookie has passed its sealed expiry")
	// errCookieAmbiguous: two cookies of one name that both open disagree.
	errCookieAmbiguous = errors.New("ginoauth: two valid cookies of one name disagree")
)

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
		return "", errCookieInvalid
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
		return "", errCookieInvalid
	}
	raw := buf[len(value) : len(value)+n]
	var plain []byte
	for i, aead := range cs.aeads {
		ns := aead.NonceSize()
		if len(raw) < ns+aead.Overhead() {
			return "", errCookieInvalid
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
		return "", errCookieInvalid
	}
	if expires := binary.BigEndian.Uint64(plain[1:9]); expires != 0 && unixSeconds(cs.now()) >= expires {
		return "", errCookieExpired
	}
	return string(plain), nil
}

// stringValue is the Manager's fast path: the string under key in the
// request's cookie called name, without building a session. ok is false
// when there is no cookie; err is errCookieInvalid or errCookieExpired.
func (cs *CookieStore) stringValue(r *http.Request, name, key string) (value string, ok bool, err error) {
	v, _, _, _, ok, err := cs.stringValues(r, name, key, "", "")
	return v, ok, err
}

// stringValues is stringValue for three keys of one cookie, opened once;
// the second and third may be absent (then their value is ""), the first
// may not.
// sealedUntil is the expiry sealed in the cookie (Unix seconds, 0: none).
//
// A request may carry several cookies of one name (a sibling subdomain can
// plant one under a Domain it shares, or under a longer Path so that it is
// sent first). Those that do not open are ignored; when two that open
// disagree on key1 (two sessions, two login bindings), neither is used and
// err is errCookieAmbiguous: picking one would let a planted cookie
// silently take the place of the real one.
func (cs *CookieStore) stringValues(r *http.Request, name, key1, key2, key3 string) (v1, v2, v3 string, sealedUntil uint64, ok bool, err error) {
	found := false
	eachCookie(r, name, func(value string) bool {
		ok = true
		plain, oerr := cs.openString(name, value)
		if oerr == nil {
			var a, b, d string
			var until uint64
			if a, b, d, until, oerr = stringsOf(plain, key1, key2, key3); oerr == nil {
				if found && a != v1 {
					err = errCookieAmbiguous
					return true
				}
				if !found {
					v1, v2, v3, sealedUntil, found, err = a, b, d, until, true, nil
				}
				return false // the others must agree
			}
		}
		if !found && (err == nil || errors.Is(oerr, errCookieExpired)) {
			err = oerr // why nothing opened, if nothing does
		}
		return false
	})
	if !found || errors.Is(err, errCookieAmbiguous) {
		return "", "", "", 0, ok, err
	}
	return v1, v2, v3, sealedUntil, true, nil
}

// stringsOf reads key1 (which must be there), key2 and key3 of an opened
// cookie, and the expiry sealed in it.
func stringsOf(plain, key1, key2, key3 string) (v1, v2, v3 string, sealedUntil uint64, err error) {
	if plain[0] != cookieFormatStrings {
		return "", "", "", 0, errCookieInvalid
	}
	found := false
	err = walkStrings(plain[9:], func(k, v string) {
		switch k {
		case key1:
			v1, found = v, true
		case key2:
			v2 = v
		case key3:
			v3 = v
		}
	})
	if err != nil || !found {
		return "", "", "", 0, errCookieInvalid
	}
	return v1, v2, v3, binary.BigEndian.Uint64([]byte(plain[1:9])), nil
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
// opts, and the expiry sealedUntil (Unix seconds; 0: opts.MaxAge's).
func (cs *CookieStore) setStrings(w http.ResponseWriter, name string, values map[any]any, opts sessions.Options, sealedUntil uint64) error {
	if sealedUntil == 0 {
		sealedUntil = cs.expiry(opts.MaxAge)
	}
	value, err := cs.seal(name, values, sealedUntil)
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
			return errCookieInvalid
		}
		rest = rest[n:]
		v, m := readChunk(rest)
		if m <= 0 {
			return errCookieInvalid
		}
		rest = rest[m:]
		for _, s := range seen {
			if s == k {
				return errCookieInvalid
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

// cookieSealGrace is how long past its session's expiry the session cookie
// still opens: a client that presents it then (a browser forgets it at its
// Max-Age, the session's expiry) learns why its session ended, and the
// session ends properly, with its event.
const cookieSealGrace = 24 * time.Hour

// setSessionCookie seals the active session's id and time of last activity,
// and the browser's other accounts (others, as the cookie holds them: ""
// for none), into the session cookie, to last until until (see
// deviceSessions.cookieUntil; with other accounts, the cookie lasts as
// long as the longest of them, see accountsUntil).
func (m *Manager) setSessionCookie(w http.ResponseWriter, sid string, active, until time.Time, others string) error {
	opts := m.sessionCookie
	opts.MaxAge = max(1, int(until.Sub(m.now())/time.Second))
	values := map[any]any{cookieSessionID: sid, cookieActive: strconv.FormatInt(active.Unix(), 10)}
	if others != "" {
		values[cookieOthers] = others
	}
	return m.cookies.setStrings(w, m.cfg.CookieName, values, opts, unixSeconds(until.Add(cookieSealGrace)))
}

// cookieBehind reports whether a cookie sealed until sealedUntil should be
// resealed for a session now expiring at expires: its session was extended
// (by use elsewhere, or by its grant's refresh) by more than window's
// extension interval since.
func cookieBehind(sealedUntil uint64, expires time.Time, window time.Duration) bool {
	return sealedUntil != 0 && unixSeconds(expires.Add(cookieSealGrace-extendEvery(window))) > sealedUntil
}

// clearSessionCookie sends Max-Age=0 for the session cookie, but only if the
// request carried one: anonymous requests get no Set-Cookie header.
func (m *Manager) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(m.cfg.CookieName); err != nil {
		return
	}
	m.expireCookie(w, m.cfg.CookieName, m.sessionCookie)
}

// expireCookie deletes cookie name, set with opts (a cookie is deleted
// only with the Domain and Path it was set with); the answer must not be
// cached with the cookie it clears.
func (m *Manager) expireCookie(w http.ResponseWriter, name string, opts sessions.Options) {
	opts.MaxAge = -1
	w.Header().Set("Cache-Control", "no-store")
	http.SetCookie(w, gsessions.NewCookie(name, "", opts.ToGorillaOptions()))
}
