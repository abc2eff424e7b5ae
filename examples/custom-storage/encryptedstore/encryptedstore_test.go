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

func wrap(t testing.TB, inner storage.Store, key []byte) storage.Store {
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
			return wrap(t, inner.(storage.Store), key)
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

// innerWith returns a store with only the capabilities asked for, cut out
// of a memstore.
func innerWith(take, lock, index bool) storage.Store {
	m := memstore.New()
	var base storage.Store = m // hides every method but Get, Set and Delete
	switch {
	case take && lock && index:
		return m
	case take && lock:
		return struct {
			storage.Store
			storage.Taker
			storage.Locker
		}{base, m, m}
	case take && index:
		return struct {
			storage.Store
			storage.Taker
			storage.Indexer
		}{base, m, m}
	case lock && index:
		return struct {
			storage.Store
			storage.Locker
			storage.Indexer
		}{base, m, m}
	case take:
		return struct {
			storage.Store
			storage.Taker
		}{base, m}
	case lock:
		return struct {
			storage.Store
			storage.Locker
		}{base, m}
	case index:
		return struct {
			storage.Store
			storage.Indexer
		}{base, m}
	}
	return struct{ storage.Store }{base}
}

// TestCapabilities: the wrapper has Take, Lock and the Indexer methods
// exactly when the inner store has them, in all eight combinations, and
// the ones it has work.
func TestCapabilities(t *testing.T) {
	ctx := context.Background()
	for mask := range 8 {
		take, lock, index := mask&1 != 0, mask&2 != 0, mask&4 != 0
		t.Run(fmt.Sprintf("take=%v,lock=%v,index=%v", take, lock, index), func(t *testing.T) {
			inner := innerWith(take, lock, index)
			_, it := inner.(storage.Taker)
			_, il := inner.(storage.Locker)
			_, ii := inner.(storage.Indexer)
			if it != take || il != lock || ii != index {
				t.Fatalf("test inner store has the wrong capabilities: %v %v %v", it, il, ii)
			}
			s := wrap(t, inner, newKey(t))
			tk, wt := s.(storage.Taker)
			l, wl := s.(storage.Locker)
			ix, wi := s.(storage.Indexer)
			if wt != take || wl != lock || wi != index {
				t.Fatalf("wrapper capabilities Taker=%v Locker=%v Indexer=%v, want %v %v %v", wt, wl, wi, take, lock, index)
			}
			if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
				t.Fatal(err)
			}
			if wt {
				if v, err := tk.Take(ctx, "k"); err != nil || string(v) != "v" {
					t.Errorf("Take = %q, %v", v, err)
				}
			}
			if wl {
				unlock, err := l.Lock(ctx, "l", time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				_ = unlock(ctx)
			}
			if wi {
				if err := ix.AddMember(ctx, "set", "m", 0); err != nil {
					t.Fatal(err)
				}
				if got, err := ix.Members(ctx, "set"); err != nil || len(got) != 1 || got[0] != "m" {
					t.Errorf("Members = %q, %v", got, err)
				}
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
