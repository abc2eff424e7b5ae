package ginoauth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-contrib/sessions"
	"github.com/gin-contrib/sessions/cookie"
	"github.com/gin-contrib/sessions/tester"
	"github.com/gin-gonic/gin"
	gsessions "github.com/gorilla/sessions"
)

var (
	testSecret  = bytes.Repeat([]byte("k"), 32)
	otherSecret = bytes.Repeat([]byte("z"), 32)
)

func mustStore(t testing.TB, secret []byte, old ...[]byte) *CookieStore {
	t.Helper()
	cs, err := newCookieStore(secret, old...)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// roundTrip saves values under name with cs and returns the Set-Cookie value.
func saveCookie(t testing.TB, cs *CookieStore, name string, values map[any]any, maxAge int) *http.Cookie {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	s, _ := cs.New(r, name)
	for k, v := range values {
		s.Values[k] = v
	}
	s.Options.MaxAge = maxAge
	w := httptest.NewRecorder()
	if err := cs.Save(r, w, s); err != nil {
		t.Fatal(err)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("want one cookie, got %d", len(cookies))
	}
	return cookies[0]
}

func readCookie(cs *CookieStore, name string, c *http.Cookie) (*gsessions.Session, error) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: name, Value: c.Value})
	return cs.Get(r, name)
}

func TestCookieStoreRoundTrip(t *testing.T) {
	cs := mustStore(t, testSecret)
	c := saveCookie(t, cs, "sid", map[any]any{"sid": "abc", "x": strings.Repeat("é", 100)}, 3600)
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.MaxAge != 3600 {
		t.Fatalf("unexpected cookie attributes: %+v", c)
	}
	if strings.Contains(c.Value, "abc") {
		t.Fatal("cookie value is not encrypted")
	}
	s, err := readCookie(cs, "sid", c)
	if err != nil {
		t.Fatal(err)
	}
	if s.IsNew || s.Values["sid"] != "abc" || s.Values["x"] != strings.Repeat("é", 100) {
		t.Fatalf("round trip lost values: %+v", s.Values)
	}
}

func TestCookieStoreRejectsTampering(t *testing.T) {
	cs := mustStore(t, testSecret)
	c := saveCookie(t, cs, "sid", map[any]any{"sid": "abc"}, 0)
	raw, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw { // flip every byte in turn: nonce, ciphertext and tag
		bad := bytes.Clone(raw)
		bad[i] ^= 0x01
		tampered := &http.Cookie{Value: base64.RawURLEncoding.EncodeToString(bad)}
		s, err := readCookie(cs, "sid", tampered)
		if !errors.Is(err, errCookieInvalid) || !s.IsNew || len(s.Values) != 0 {
			t.Fatalf("byte %d flipped: err=%v values=%v", i, err, s.Values)
		}
	}
	for _, v := range []string{"", "!!!", strings.Repeat("A", maxCookieValue+1), "AAAA"} {
		if _, err := readCookie(cs, "sid", &http.Cookie{Value: v}); v != "" && !errors.Is(err, errCookieInvalid) {
			t.Fatalf("value %.10q: want errCookieInvalid, got %v", v, err)
		}
	}
}

func TestCookieStoreBindsName(t *testing.T) {
	cs := mustStore(t, testSecret)
	c := saveCookie(t, cs, "sid_flow", map[any]any{"b": "x"}, 0)
	if _, err := readCookie(cs, "sid", c); !errors.Is(err, errCookieInvalid) {
		t.Fatalf("a cookie sealed for another name was accepted: %v", err)
	}
}

func TestCookieStoreKeyRotation(t *testing.T) {
	oldStore := mustStore(t, otherSecret)
	c := saveCookie(t, oldStore, "sid", map[any]any{"sid": "v"}, 0)

	rotated := mustStore(t, testSecret, otherSecret)
	if s, err := readCookie(rotated, "sid", c); err != nil || s.Values["sid"] != "v" {
		t.Fatalf("old secret should still open: %v", err)
	}
	fresh := saveCookie(t, rotated, "sid", map[any]any{"sid": "w"}, 0)
	if _, err := readCookie(oldStore, "sid", fresh); !errors.Is(err, errCookieInvalid) {
		t.Fatal("new cookies must be sealed with the first (new) secret")
	}
	if s, err := readCookie(mustStore(t, testSecret), "sid", fresh); err != nil || s.Values["sid"] != "w" {
		t.Fatalf("new secret alone should open new cookies: %v", err)
	}
	if _, err := readCookie(mustStore(t, testSecret), "sid", c); !errors.Is(err, errCookieInvalid) {
		t.Fatal("once the old secret is dropped its cookies must fail")
	}
}

func TestCookieStoreSealedExpiry(t *testing.T) {
	cs := mustStore(t, testSecret)
	now := time.Unix(1_700_000_000, 0)
	cs.now = func() time.Time { return now }
	long := 90 * 24 * 3600 // longer than gorilla's 30-day default
	c := saveCookie(t, cs, "sid", map[any]any{"sid": "v"}, long)
	now = now.Add(89 * 24 * time.Hour)
	if _, err := readCookie(cs, "sid", c); err != nil {
		t.Fatalf("an 89-day-old cookie with a 90-day MaxAge must open: %v", err)
	}
	now = now.Add(2 * 24 * time.Hour)
	if _, err := readCookie(cs, "sid", c); !errors.Is(err, errCookieExpired) {
		t.Fatalf("a replayed cookie past its sealed expiry must fail, got %v", err)
	}
}

func TestCookieStoreDeleteAndTypes(t *testing.T) {
	cs := mustStore(t, testSecret)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	s, _ := cs.New(r, "sid")
	s.Options.MaxAge = -1
	w := httptest.NewRecorder()
	if err := cs.Save(r, w, s); err != nil {
		t.Fatal(err)
	}
	if c := w.Result().Cookies()[0]; c.MaxAge >= 0 || c.Value != "" {
		t.Fatalf("deletion cookie should have Max-Age=0 and no value: %+v", c)
	}
	s.Options.MaxAge = 0
	type unregistered struct{ X int }
	s.Values["n"] = unregistered{1}
	if err := cs.Save(r, httptest.NewRecorder(), s); err == nil {
		t.Fatal("a value gob cannot encode must be refused with an error")
	}
	if _, err := newCookieStore([]byte("short")); err == nil {
		t.Fatal("short secret accepted")
	}
}

// BenchmarkCookieDecode compares what every authenticated request pays to read
// its session cookie: this store against gin-contrib's default cookie store.
func BenchmarkCookieDecode(b *testing.B) {
	sid := randomToken(sessionIDBytes)
	b.Run("sealed-aes-gcm", func(b *testing.B) {
		cs := mustStore(b, testSecret)
		c := saveCookie(b, cs, "sid", map[any]any{"sid": sid}, 3600)
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(c)
		b.ReportAllocs()
		for b.Loop() {
			s, err := cs.Get(r, "sid")
			if err != nil || s.Values["sid"] != sid {
				b.Fatal(err)
			}
		}
	})
	b.Run("gin-contrib-cookie-store", func(b *testing.B) {
		store := cookie.NewStore(testSecret, testSecret)
		store.Options(sessions.Options{Path: "/", MaxAge: 3600})
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		s, _ := store.New(r, "sid")
		s.Values["sid"] = sid
		w := httptest.NewRecorder()
		if err := store.Save(r, w, s); err != nil {
			b.Fatal(err)
		}
		r = httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(w.Result().Cookies()[0])
		b.ReportAllocs()
		for b.Loop() {
			s, err := store.New(r, "sid") // New, not Get: Get caches per request

			if err != nil || s.Values["sid"] != sid {
				b.Fatal(err)
			}
		}
	})
}

// Any cookie value, however hostile, is answered with a new session and at
// most an error: never a panic, never values.
func FuzzCookieDecode(f *testing.F) {
	cs := mustStore(f, testSecret)
	good := saveCookie(f, cs, "sid", map[any]any{"sid": "v"}, 60)
	for _, s := range []string{good.Value, "", "AAAA", strings.Repeat("_", 200), good.Value[:20]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, err := readCookie(cs, "sid", &http.Cookie{Value: v})
		if err != nil && (!s.IsNew || len(s.Values) != 0) {
			t.Fatalf("a rejected cookie must give an empty new session")
		}
		// Also seal v itself as the plaintext, so the parser behind the
		// authentication check sees arbitrary bytes too.
		aead := cs.aeads[0]
		nonce := make([]byte, aead.NonceSize())
		sealed := aead.Seal(nonce, nonce, []byte(v), []byte("sid"))
		if plain, err := cs.openValue("sid", base64.RawURLEncoding.EncodeToString(sealed)); err == nil {
			_ = decodeValues(plain, map[any]any{})
		}
	})
}

// CookieStore is a complete gin-contrib/sessions store: it passes the store
// suite gin-contrib runs against its own stores (flashes and options
// included), so an app can use it for its own sessions.
func TestCookieStorePassesGinContribSuite(t *testing.T) {
	gin.SetMode(gin.TestMode)
	newStore := func(*testing.T) sessions.Store {
		cs := mustStore(t, testSecret)
		cs.Options(sessions.Options{Path: "/"}) // like cookie.NewStore, not Secure, so plain-http tests carry it
		return cs
	}
	t.Run("GetSet", func(t *testing.T) { tester.GetSet(t, newStore) })
	t.Run("DeleteKey", func(t *testing.T) { tester.DeleteKey(t, newStore) })
	t.Run("Flashes", func(t *testing.T) { tester.Flashes(t, newStore) })
	t.Run("Clear", func(t *testing.T) { tester.Clear(t, newStore) })
	t.Run("Options", func(t *testing.T) { tester.Options(t, newStore) })
	t.Run("Many", func(t *testing.T) { tester.Many(t, newStore) })
}

// Non-string values (a flash list, numbers) round-trip; the Manager's fast
// path refuses a cookie that is not all strings.
func TestCookieStoreGeneralValues(t *testing.T) {
	cs := mustStore(t, testSecret)
	c := saveCookie(t, cs, "app", map[any]any{"n": 42, "list": []any{"a", "b"}, "s": "x"}, 60)
	s, err := readCookie(cs, "app", c)
	if err != nil || s.Values["n"] != 42 || s.Values["s"] != "x" || len(s.Values["list"].([]any)) != 2 {
		t.Fatalf("general values: %v %#v", err, s.Values)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: "app", Value: c.Value})
	if _, ok, err := cs.stringValue(r, "app", "s"); !ok || !errors.Is(err, errCookieInvalid) {
		t.Fatalf("the fast path must refuse a gob cookie: %v %v", ok, err)
	}
}

// A sibling subdomain can plant cookies with the same name; the one that
// opens wins, whatever the order, and the value has one spelling only.
func TestCookieStoreTossedCookies(t *testing.T) {
	cs := mustStore(t, testSecret)
	good := saveCookie(t, cs, "sid", map[any]any{"sid": "real"}, 60)
	for _, order := range [][]string{{"garbage", good.Value}, {good.Value, "garbage"}} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, v := range order {
			r.AddCookie(&http.Cookie{Name: "sid", Value: v})
		}
		if v, ok, err := cs.stringValue(r, "sid", "sid"); !ok || err != nil || v != "real" {
			t.Fatalf("cookies %v: got %q %v %v", order, v, ok, err)
		}
	}
	// The last base64 character carries spare bits: another spelling of
	// the same bytes must not open.
	last := good.Value[len(good.Value)-1]
	for _, alt := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		if alt == last {
			continue
		}
		v := good.Value[:len(good.Value)-1] + string(alt)
		raw1, err1 := base64.RawURLEncoding.DecodeString(v)
		raw2, _ := base64.RawURLEncoding.DecodeString(good.Value)
		if err1 == nil && bytes.Equal(raw1, raw2) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.AddCookie(&http.Cookie{Name: "sid", Value: v})
			if _, _, err := cs.stringValue(r, "sid", "sid"); err == nil {
				t.Fatalf("a second spelling of the cookie opened: %q", v)
			}
		}
	}
}
