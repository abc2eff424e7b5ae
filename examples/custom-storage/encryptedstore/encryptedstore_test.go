package encryptedstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/examples/custom-storage/encryptedstore"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storagetest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
)

func newKey(t testing.TB) []byte {
	k := make([]byte, encryptedstore.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func wrap(t testing.TB, inner encryptedstore.Inner, key []byte) storage.Store {
	t.Helper()
	s, err := encryptedstore.New(inner, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The whole contract, Take, Lock and Indexer included, through the wrapper
// over the in-memory store. Reopen is a second wrapper on the same inner
// store with the same key, as a second app instance has.
func TestSuiteOverMemstore(t *testing.T) {
	var inners sync.Map // wrapper -> inner
	key := newKey(t)
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T) storage.Store {
			inner := memstore.New()
			s := wrap(t, inner, key)
			inners.Store(s, inner)
			return s
		},
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			inner, _ := inners.Load(s)
			return wrap(t, inner.(encryptedstore.Inner), key)
		},
	})
}

// The same over Redis (skipped without GINOAUTH_TEST_REDIS_ADDR), with the
// fault check: a closed client's failures come through as failures.
func TestSuiteOverRedis(t *testing.T) {
	testdb.RedisAddr(t)
	type handle struct {
		prefix string
		rdb    *redis.Client
	}
	var handles sync.Map // wrapper -> handle
	key := newKey(t)
	open := func(t *testing.T, prefix string) storage.Store {
		rdb := testdb.RedisClient(t)
		inner, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		s := wrap(t, inner, key)
		handles.Store(s, handle{prefix, rdb})
		return s
	}
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T) storage.Store { return open(t, testdb.RedisPrefix(t)) },
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			h, _ := handles.Load(s)
			return open(t, h.(handle).prefix)
		},
		Break: func(t *testing.T, s storage.Store) {
			h, _ := handles.Load(s)
			_ = h.(handle).rdb.Close()
		},
	})
}

// replicaReader is memstore with a replica read: a replica that never
// lags (which the StaleReader contract allows).
type replicaReader struct{ *memstore.Store }

func (r replicaReader) GetStale(ctx context.Context, key string) ([]byte, error) {
	return r.Get(ctx, key)
}
func (r replicaReader) MaxStaleness() time.Duration { return time.Second }

// TestCapabilities: the wrapper has every capability of the shipped stores,
// and StaleReader exactly when the inner store has it; each works through
// the encryption.
func TestCapabilities(t *testing.T) {
	ctx := context.Background()
	for _, stale := range []bool{false, true} {
		t.Run(fmt.Sprintf("stale=%v", stale), func(t *testing.T) {
			m := memstore.New()
			var inner encryptedstore.Inner = m
			if stale {
				inner = replicaReader{m}
			}
			s := wrap(t, inner, newKey(t))
			tk, wt := s.(storage.Taker)
			l, wl := s.(storage.Locker)
			rl, wrl := s.(storage.RenewableLocker)
			ix, wi := s.(storage.Indexer)
			sw, ws := s.(storage.Swapper)
			c, wc := s.(storage.Counter)
			r, wr := s.(storage.StaleReader)
			if !wt || !wl || !wrl || !wi || !ws || !wc || wr != stale {
				t.Fatalf("wrapper capabilities Taker=%v Locker=%v RenewableLocker=%v Indexer=%v Swapper=%v Counter=%v StaleReader=%v", wt, wl, wrl, wi, ws, wc, wr)
			}
			// Renewals reach the inner store's lease.
			token, unlockRenewed, err := rl.LockRenewable(ctx, "renewed", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if err := rl.Renew(ctx, "renewed", token, time.Minute); err != nil {
				t.Fatalf("Renew through the wrapper: %v", err)
			}
			if err := unlockRenewed(ctx); err != nil {
				t.Fatal(err)
			}
			if err := rl.Renew(ctx, "renewed", token, time.Minute); !errors.Is(err, storage.ErrLeaseLost) {
				t.Fatalf("Renew after Unlock through the wrapper: %v, want storage.ErrLeaseLost", err)
			}
			if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
				t.Fatal(err)
			}
			if ok, err := sw.Swap(ctx, "k", []byte("v"), []byte("w"), time.Hour); !ok || err != nil {
				t.Fatalf("Swap = %v, %v", ok, err)
			}
			if ok, err := sw.Swap(ctx, "k", []byte("v"), []byte("x"), time.Hour); ok || err != nil {
				t.Fatalf("Swap from a stale value = %v, %v", ok, err)
			}
			if wr {
				if v, err := r.GetStale(ctx, "k"); err != nil || string(v) != "w" {
					t.Errorf("GetStale = %q, %v", v, err)
				}
			}
			if v, err := tk.Take(ctx, "k"); err != nil || string(v) != "w" {
				t.Errorf("Take = %q, %v", v, err)
			}
			unlock, err := l.Lock(ctx, "l", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			_ = unlock(ctx)
			if err := ix.AddMember(ctx, "set", "m", 0); err != nil {
				t.Fatal(err)
			}
			if got, err := ix.Members(ctx, "set"); err != nil || len(got) != 1 || got[0] != "m" {
				t.Errorf("Members = %q, %v", got, err)
			}
			if n, err := c.Incr(ctx, "n", 2, time.Minute); err != nil || n != 2 {
				t.Errorf("Incr = %d, %v", n, err)
			}
		})
	}
}

// TestAtRest: the inner store holds only ciphertext.
func TestAtRest(t *testing.T) {
	ctx := context.Background()
	inner := memstore.New()
	s := wrap(t, inner, newKey(t))
	secret := []byte(`{"access_token":"secret-token-123"}`)
	if err := s.Set(ctx, "session:1", secret, time.Hour); err != nil {
		t.Fatal(err)
	}
	raw, err := inner.Get(ctx, "session:1")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("secret-token")) {
		t.Fatalf("the inner store holds the plaintext: %q", raw)
	}
	if len(raw) != 1+12+len(secret)+16 || raw[0] != 1 {
		t.Errorf("sealed value of %d bytes (first byte %d), want version 1, a 12-byte nonce, the ciphertext and a 16-byte tag", len(raw), raw[0])
	}
	// The same value twice is sealed differently (a fresh nonce each time).
	if err := s.Set(ctx, "session:2", secret, time.Hour); err != nil {
		t.Fatal(err)
	}
	raw2, _ := inner.Get(ctx, "session:2")
	if bytes.Equal(raw[1:], raw2[1:]) {
		t.Error("two Sets of one value stored the same bytes")
	}
	if got, err := s.Get(ctx, "session:1"); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("Get = %q, %v", got, err)
	}
}

// TestCannotOpen: a value moved to another key, read with another key,
// altered, or never sealed is a failure, not a value and not "not found".
func TestCannotOpen(t *testing.T) {
	ctx := context.Background()
	inner := memstore.New()
	s := wrap(t, inner, newKey(t))
	other := wrap(t, inner, newKey(t)) // the same data, another encryption key
	sealedFor := func(key string) []byte {
		if err := s.Set(ctx, key, []byte("a record"), 0); err != nil {
			t.Fatal(err)
		}
		raw, err := inner.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	alices, mallorys := sealedFor("alice"), sealedFor("mallory")
	tampered := bytes.Clone(mallorys)
	tampered[len(tampered)-1] ^= 1
	cases := []struct {
		name   string
		raw    []byte // what the inner store holds under "mallory"
		reader storage.Store
	}{
		{"moved from another key", alices, s},
		{"another encryption key", mallorys, other},
		{"altered", tampered, s},
		{"stored in the clear", []byte("a value from before encryption"), s},
		{"empty", nil, s},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reads := map[string]func() ([]byte, error){
				"get":  func() ([]byte, error) { return tc.reader.Get(ctx, "mallory") },
				"take": func() ([]byte, error) { return tc.reader.(storage.Taker).Take(ctx, "mallory") },
			}
			for op, read := range reads {
				if err := inner.Set(ctx, "mallory", tc.raw, 0); err != nil {
					t.Fatal(err)
				}
				v, err := read()
				var se *storage.Error
				if v != nil || !errors.As(err, &se) || se.Op != op || !errors.Is(err, encryptedstore.ErrCannotOpen) {
					t.Errorf("%s = %q, %v; want a *storage.Error (Op %q) wrapping ErrCannotOpen", op, v, err, op)
				}
				if errors.Is(err, storage.ErrNotFound) {
					t.Errorf("%s: an undecryptable value reported as not found", op)
				}
			}
		})
	}
	if v, err := s.Get(ctx, "alice"); err != nil || string(v) != "a record" {
		t.Errorf("the original value: %q, %v", v, err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := encryptedstore.New(nil, newKey(t)); err == nil {
		t.Error("New with a nil inner store succeeded")
	}
	for _, n := range []int{0, 16, 24, 31, 33} {
		if _, err := encryptedstore.New(memstore.New(), make([]byte, n)); err == nil {
			t.Errorf("New with a %d-byte key succeeded", n)
		}
	}
}
