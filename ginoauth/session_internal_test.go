package ginoauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// plainStorage is a map Storage without the optional capabilities, as a
// user might first write one. (The stores packages import this package, so
// internal tests cannot use them.)
type plainStorage struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newPlainStorage() *plainStorage { return &plainStorage{m: map[string][]byte{}} }

func (p *plainStorage) Get(_ context.Context, k string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.m[k]
	if !ok {
		return nil, storage.ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

func (p *plainStorage) Set(_ context.Context, k string, v []byte, _ time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[k] = append([]byte(nil), v...)
	return nil
}

func (p *plainStorage) Delete(_ context.Context, k string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, k)
	return nil
}

func (p *plainStorage) has(prefix string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range p.m {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

func testContext(cookies ...*http.Cookie) (*gin.Context, *httptest.ResponseRecorder) {
	w := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(w)
	c.Request = httptest.NewRequest(http.MethodGet, "/", nil)
	for _, ck := range cookies {
		c.Request.AddCookie(ck)
	}
	return c, w
}

// The record's own expiry ends a session even while the cookie (whose sealed
// expiry is checked separately) and the storage entry are still there.
func TestRecordExpiryIsCheckedOnTheServer(t *testing.T) {
	store := newPlainStorage() // ignores TTLs, like a store whose cleanup lags
	cfg := validConfig()
	cfg.Storage = store
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, w := testContext()
	if _, err := m.startSession(c, &oauthclient.Grant{DID: "did:plc:abc", OAuthSessionID: "s1"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	cookie := w.Result().Cookies()[0]

	c2, _ := testContext(cookie)
	if u, err := m.loadUser(c2); err != nil || u == nil || u.DID != "did:plc:abc" {
		t.Fatalf("fresh session should load: %v %v", u, err)
	}
	later := time.Now().Add(fallbackMaxAge + time.Minute) // the client cannot tell its grant's limits
	m.now = func() time.Time { return later }             // the cookie store keeps the real clock
	m.sessions.now = m.now
	c3, _ := testContext(cookie)
	if u, err := m.loadUser(c3); err != nil || u != nil {
		t.Fatalf("a session past its record's expiry must be anonymous: %v %v", u, err)
	}
	if store.has(sessionKeyPrefix) {
		t.Fatal("the expired record should be deleted")
	}
}

// Without an atomic Take, one-time records are still single use within the
// process, also under concurrency.
func TestEmulatedTakeIsSingleUse(t *testing.T) {
	cfg := validConfig()
	cfg.Storage = newPlainStorage()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for round := 0; round < 20; round++ {
		if err := m.setJSON(ctx, "flow:x", flowRecord{ReturnTo: "/"}, time.Minute); err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var rec flowRecord
				if err := m.takeJSON(ctx, "flow:x", &rec); err == nil {
					wins.Add(1)
				} else if !errors.Is(err, storage.ErrNotFound) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", round, wins.Load())
		}
	}
}

// Two ends of one session (a request and a background check, or two
// instances) report it once: the second finds it gone under the device
// lock and emits nothing, nor leaves a second note.
func TestASessionEndedTwiceIsReportedOnce(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	done := make(chan struct{}, 4)
	cfg := validConfig()
	cfg.Storage = newPlainStorage()
	cfg.OnEvent = func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
		done <- struct{}{}
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := testContext()
	if _, err := m.startSession(c, &oauthclient.Grant{DID: "did:plc:abc", OAuthSessionID: "s1"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	<-done // the login
	u, _ := CurrentUser(c)
	for range 2 {
		if err := m.sessions.end(context.Background(), u.sessionHash, u.record(), EndRevokedAtServer); err != nil {
			t.Fatal(err)
		}
	}
	_ = m.Close() // delivers every queued event
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, e := range events {
		if e.Type == EventSessionEnded {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d session_ended events for one session, want 1: %+v", n, events)
	}
}
