package indigoclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// ttlRecorder is a real Storage that also remembers the TTL of each Set, so
// tests can see which lifetime the AuthStore asked for.
type ttlRecorder struct {
	storage.Store
	mu   sync.Mutex
	ttls map[string]time.Duration
}

func (r *ttlRecorder) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	r.mu.Lock()
	r.ttls[k] = ttl
	r.mu.Unlock()
	return r.Store.Set(ctx, k, v, ttl)
}

func (r *ttlRecorder) Take(ctx context.Context, k string) ([]byte, error) {
	return r.Store.(storage.Taker).Take(ctx, k)
}

func (r *ttlRecorder) ttl(k string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ttls[k]
}

var testDID = syntax.DID("did:plc:abcdefghijklmnopqrstuvwx")

func sessionData(token string) oauth.ClientSessionData {
	return oauth.ClientSessionData{
		AccountDID: testDID, SessionID: "state-1", HostURL: "https://pds.test",
		AuthServerURL: "https://pds.test", AccessToken: token, RefreshToken: "r-" + token,
		DPoPPrivateKeyMultibase: "zkey",
	}
}

func TestAuthStore(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			t.Run("auth requests expire and are consumed once", func(t *testing.T) {
				rec := &ttlRecorder{Store: be.New(t), ttls: map[string]time.Duration{}}
				s := NewAuthStore(rec, AuthStoreOptions{AuthRequestTTL: 7 * time.Minute})
				ctx := context.Background()
				if err := s.SaveAuthRequestInfo(ctx, oauth.AuthRequestData{State: "st", PKCEVerifier: "v"}); err != nil {
					t.Fatal(err)
				}
				if got := rec.ttl(authRequestPrefix + "st"); got != 7*time.Minute {
					t.Fatalf("pending request stored with TTL %v, want the AuthRequestTTL", got)
				}
				info, err := s.GetAuthRequestInfo(ctx, "st")
				if err != nil || info.PKCEVerifier != "v" {
					t.Fatalf("first read: %v %+v", err, info)
				}
				if _, err := s.GetAuthRequestInfo(ctx, "st"); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("a pending request must be usable once, got %v", err)
				}
				if err := s.DeleteAuthRequestInfo(ctx, "st"); err != nil {
					t.Fatalf("deleting a consumed request is not an error: %v", err)
				}
			})

			t.Run("a public grant lives two weeks from its login, refreshed or not", func(t *testing.T) {
				rec := &ttlRecorder{Store: be.New(t), ttls: map[string]time.Duration{}}
				s := NewAuthStore(rec, AuthStoreOptions{})
				now := time.Now()
				s.now = func() time.Time { return now }
				ctx := context.Background()
				key := sessionKey(testDID, "state-1")

				if _, err := s.create(ctx, sessionData("a1"), 30*24*time.Hour, ""); err != nil {
					t.Fatal(err)
				}
				if got := rec.ttl(key); got != 14*24*time.Hour {
					t.Fatalf("new session stored with TTL %v, want the grant's 14 days (under the login's cap of 30)", got)
				}
				now = now.Add(24 * time.Hour)
				if err := s.SaveSession(ctx, sessionData("a2")); err != nil { // indigo's own save path
					t.Fatal(err)
				}
				if got := rec.ttl(key); got != 13*24*time.Hour {
					t.Fatalf("a refresh must not extend a public grant: TTL %v, want 13 days", got)
				}
				now = now.Add(24 * time.Hour)
				if err := s.saveRotated(ctx, sessionData("a3"), "r-a2"); err != nil { // rotated tokens
					t.Fatal(err)
				}
				if got := rec.ttl(key); got != 12*24*time.Hour {
					t.Fatalf("rotated tokens must keep the grant's end: TTL %v, want 12 days", got)
				}
				got, err := s.GetSession(ctx, testDID, "state-1")
				if err != nil || got.AccessToken != "a3" {
					t.Fatalf("latest tokens not read back: %v %+v", err, got)
				}
			})

			t.Run("a confidential grant lives as long as it is refreshed, up to its end", func(t *testing.T) {
				rec := &ttlRecorder{Store: be.New(t), ttls: map[string]time.Duration{}}
				const day = 24 * time.Hour
				s := NewAuthStore(rec, AuthStoreOptions{GrantLifetime: 730 * day, RefreshInactivity: 90 * day})
				start := time.Now()
				now := start
				s.now = func() time.Time { return now }
				ctx := context.Background()
				key := sessionKey(testDID, "state-1")

				st, err := s.create(ctx, sessionData("a1"), 365*day, "k1") // the app caps logins at a year
				if err != nil {
					t.Fatal(err)
				}
				if got := rec.ttl(key); got != 90*day {
					t.Fatalf("new session stored with TTL %v, want the 90 days its refresh token lives unused", got)
				}
				if refreshBy, endsAt := st.limits(); !refreshBy.Equal(start.Add(90*day)) || !endsAt.Equal(start.Add(365*day)) {
					t.Fatalf("limits %v, %v; want +90 days and the app's cap", refreshBy, endsAt)
				}
				prev := "r-a1"
				for i := 2; i <= 5; i++ { // refreshed every 80 days: alive past 300 days
					now = now.Add(80 * day)
					if err := s.saveRotated(ctx, sessionData(fmt.Sprint("a", i)), prev); err != nil {
						t.Fatal(err)
					}
					prev = fmt.Sprint("r-a", i)
					want := min(90*day, start.Add(365*day).Sub(now))
					if got := rec.ttl(key); got != want {
						t.Fatalf("refresh %d: TTL %v, want %v", i, got, want)
					}
				}
			})

			t.Run("a logged-out session is never resurrected by a late token save", func(t *testing.T) {
				s := NewAuthStore(be.New(t), AuthStoreOptions{})
				ctx := context.Background()
				if _, err := s.create(ctx, sessionData("a1"), time.Hour, ""); err != nil {
					t.Fatal(err)
				}
				if err := s.DeleteSession(ctx, testDID, "state-1"); err != nil {
					t.Fatal(err)
				}
				if err := s.saveRotated(ctx, sessionData("a2"), "r-a1"); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("update of a deleted session: want ErrNotFound, got %v", err)
				}
				if _, err := s.GetSession(ctx, testDID, "state-1"); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("deleted session came back: %v", err)
				}
			})
		})
	}
}

// The class of defect behind "Refresh token replayed" logouts: a copy of
// the session loaded before a rotation (indigo hands its whole in-memory
// data to the save callback on every DPoP nonce update) must never put the
// spent tokens back.
func TestAuthStoreNeverWritesOlderTokens(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			rec := &ttlRecorder{Store: be.New(t), ttls: map[string]time.Duration{}}
			s := NewAuthStore(rec, AuthStoreOptions{})
			ctx := context.Background()
			if _, err := s.create(ctx, sessionData("a1"), time.Hour, ""); err != nil {
				t.Fatal(err)
			}
			stale := sessionData("a1") // loaded by a request before the rotation
			if err := s.saveRotated(ctx, sessionData("a2"), "r-a1"); err != nil {
				t.Fatal(err)
			}
			if err := s.saveRotated(ctx, sessionData("a3"), "r-a2"); err != nil {
				t.Fatal(err)
			}
			key := sessionKey(testDID, "state-1")
			before := rec.ttl(key)
			rec.ttls = map[string]time.Duration{}

			stale.DPoPHostNonce = "fresh-nonce" // a nonce update of the stale copy
			if err := s.SaveSession(ctx, stale); err != nil {
				t.Fatal(err)
			}
			mid := sessionData("a2")
			if err := s.SaveSession(ctx, mid); err != nil {
				t.Fatal(err)
			}
			if err := s.saveRotated(ctx, sessionData("a2"), "r-a1"); !errors.Is(err, errStaleTokens) {
				t.Fatalf("a rotation from a spent token must be refused, got %v", err)
			}
			got, err := s.GetSession(ctx, testDID, "state-1")
			if err != nil || got.AccessToken != "a3" || got.RefreshToken != "r-a3" {
				t.Fatalf("stored tokens went back to an older generation: %v %+v", err, got)
			}
			if got.DPoPHostNonce != "fresh-nonce" {
				t.Fatalf("the nonce learned by the stale copy must still be used, got %q", got.DPoPHostNonce)
			}
			if _, wrote := rec.ttls[key]; wrote || before == 0 {
				t.Fatal("saves that do not rotate tokens must not write the record")
			}

			// A save with the stored refresh token is a nonce update only.
			cur := sessionData("a3")
			cur.AccessToken = "tampered"
			if err := s.SaveSession(ctx, cur); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.GetSession(ctx, testDID, "state-1"); got.AccessToken != "a3" {
				t.Fatalf("a nonce update rewrote the tokens: %+v", got)
			}
			// A rotation done outside this library (indigo used directly)
			// is still saved.
			if err := s.SaveSession(ctx, sessionData("a4")); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.GetSession(ctx, testDID, "state-1"); got.AccessToken != "a4" {
				t.Fatalf("a new rotation was not saved: %+v", got)
			}
		})
	}
}

// failingStorage is down: every call fails.
type failingStorage struct{}

var errDown = errors.New("down")

func (failingStorage) Get(context.Context, string) ([]byte, error)              { return nil, errDown }
func (failingStorage) Set(context.Context, string, []byte, time.Duration) error { return errDown }
func (failingStorage) Delete(context.Context, string) error                     { return errDown }

func TestAuthStoreFailuresAreStorageErrors(t *testing.T) {
	s := NewAuthStore(failingStorage{}, AuthStoreOptions{})
	ctx := context.Background()
	var se *storage.Error
	if _, err := s.GetSession(ctx, testDID, "x"); !errors.As(err, &se) || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetSession: want a StorageError, not not-found: %v", err)
	}
	if _, err := s.GetAuthRequestInfo(ctx, "x"); !errors.As(err, &se) {
		t.Fatalf("GetAuthRequestInfo: want a StorageError: %v", err)
	}
	if err := s.SaveAuthRequestInfo(ctx, oauth.AuthRequestData{State: "x"}); !errors.As(err, &se) {
		t.Fatalf("SaveAuthRequestInfo: want a StorageError: %v", err)
	}
	if err := s.SaveSession(ctx, sessionData("a")); !errors.As(err, &se) {
		t.Fatalf("SaveSession: want a StorageError: %v", err)
	}
}
