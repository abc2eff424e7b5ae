// Package encryptedstore is an example of writing your own storage.Store:
// a wrapper around any other store that encrypts every value at rest with
// AES-256-GCM, so that a copy of the database (a backup, a replica, a
// stolen disk) does not hand out session records and OAuth tokens.
//
//	inner, _ := redisstore.New(rdb, redisstore.Options{})
//	store, err := encryptedstore.New(inner, key) // key: 32 random bytes, kept secret
//
// Writing a wrapper takes care in two places, both shown here:
//
//   - The optional capabilities. The library finds storage.Taker,
//     storage.Locker and storage.Indexer by type assertion on the Store it
//     is given, so a wrapper must have exactly the methods of the store it
//     wraps: one that always had Take would claim an atomic read-and-delete
//     that a store without one cannot give, and one that never had Lock
//     would quietly turn off the cross-instance refresh lock. New therefore
//     returns a value of one of eight types, one per combination.
//   - The contract. The wrapper keeps it by leaning on the inner store
//     (TTLs, key rules, ErrNotFound, failures) and adding nothing that could
//     break it: Get returns a fresh slice the caller owns, Set does not keep
//     the caller's slice, and a value it cannot decrypt is a failure
//     (*storage.Error, so the library answers 503), never "not found".
//
// Each value is stored as a version byte, a random 96-bit nonce and the
// GCM ciphertext with its tag. The storage key is bound to it as additional
// data: a value copied to another key does not decrypt, so whoever can
// write to the database cannot move one user's record onto another's key.
//
// What is not encrypted: keys, lock names, set names and members, which the
// inner store must compare to find anything (the library keeps session ids
// in them only as hashes), and TTLs. Locker and Indexer are therefore
// forwarded unchanged.
//
// Key rotation is left out to keep the example short: the version byte is
// where a key id would go. With random nonces, rotate the key well before
// 2^32 values have been written under it.
package encryptedstore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// KeySize is the length of the key New takes: 32 bytes, for AES-256.
const KeySize = 32

// ErrCannotOpen is wrapped in the *storage.Error that Get and Take return
// for a stored value that does not decrypt: written under another key
// (the key changed, or the value was moved), not written by this package,
// or altered.
var ErrCannotOpen = errors.New("encryptedstore: the stored value does not decrypt with this key under this storage key")

// version is the first byte of every sealed value.
const version byte = 1

// New returns a Store that keeps every value in inner sealed with key
// (KeySize bytes). It implements storage.Taker, storage.Locker and
// storage.Indexer exactly when inner does.
func New(inner storage.Store, key []byte) (storage.Store, error) {
	if inner == nil {
		return nil, errors.New("encryptedstore: nil inner store")
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("encryptedstore: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &store{inner: inner, aead: aead}

	// The capabilities inner has, and only those. Take decrypts, so it is
	// a method of ours; Lock and the Indexer methods carry no values and
	// are inner's own.
	t, canTake := inner.(storage.Taker)
	l, canLock := inner.(storage.Locker)
	ix, canIndex := inner.(storage.Indexer)
	var tk storage.Taker = taker{s, t}
	switch {
	case canTake && canLock && canIndex:
		return struct {
			*store
			storage.Taker
			storage.Locker
			storage.Indexer
		}{s, tk, l, ix}, nil
	case canTake && canLock:
		return struct {
			*store
			storage.Taker
			storage.Locker
		}{s, tk, l}, nil
	case canTake && canIndex:
		return struct {
			*store
			storage.Taker
			storage.Indexer
		}{s, tk, ix}, nil
	case canLock && canIndex:
		return struct {
			*store
			storage.Locker
			storage.Indexer
		}{s, l, ix}, nil
	case canTake:
		return struct {
			*store
			storage.Taker
		}{s, tk}, nil
	case canLock:
		return struct {
			*store
			storage.Locker
		}{s, l}, nil
	case canIndex:
		return struct {
			*store
			storage.Indexer
		}{s, ix}, nil
	}
	return s, nil
}

// store is the Store part: Get, Set and Delete.
type store struct {
	inner storage.Store
	aead  cipher.AEAD
}

// additionalData binds a sealed value to its version and storage key.
func additionalData(key string) []byte {
	return append([]byte{version}, key...)
}

// seal returns version || nonce || ciphertext+tag, in a new slice (the
// caller's value is only read).
func (s *store) seal(key string, plain []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plain)+s.aead.Overhead())
	out[0] = version
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return s.aead.Seal(out, out[1:], plain, additionalData(key)), nil
}

// open reverses seal into a new slice the caller owns.
func (s *store) open(key string, sealed []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != version {
		return nil, ErrCannotOpen
	}
	plain, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], additionalData(key))
	if err != nil {
		return nil, ErrCannotOpen
	}
	if plain == nil {
		plain = []byte{} // a stored empty value is a value, not "missing"
	}
	return plain, nil
}

// Get implements storage.Store: inner's Get, then decryption.
func (s *store) Get(ctx context.Context, key string) ([]byte, error) {
	sealed, err := s.inner.Get(ctx, key)
	if err != nil {
		return nil, storage.Wrap("get", err) // ErrNotFound stays ErrNotFound
	}
	plain, err := s.open(key, sealed)
	if err != nil {
		return nil, storage.Wrap("get", err)
	}
	return plain, nil
}

// Set implements storage.Store: encryption, then inner's Set, which applies
// the TTL and the key rules.
func (s *store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	sealed, err := s.seal(key, value)
	if err != nil {
		return storage.Wrap("set", err)
	}
	return storage.Wrap("set", s.inner.Set(ctx, key, sealed, ttl))
}

// Delete implements storage.Store: inner's Delete.
func (s *store) Delete(ctx context.Context, key string) error {
	return storage.Wrap("delete", s.inner.Delete(ctx, key))
}

// taker adds Take when the inner store has one.
type taker struct {
	s     *store
	inner storage.Taker
}

// Take implements storage.Taker: inner's atomic Take, then decryption.
func (t taker) Take(ctx context.Context, key string) ([]byte, error) {
	sealed, err := t.inner.Take(ctx, key)
	if err != nil {
		return nil, storage.Wrap("take", err)
	}
	plain, err := t.s.open(key, sealed)
	if err != nil {
		return nil, storage.Wrap("take", err)
	}
	return plain, nil
}
