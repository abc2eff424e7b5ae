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
//     storage.Locker, storage.RenewableLocker, storage.Indexer,
//     storage.Swapper, storage.Counter and storage.StaleReader by type
//     assertion on the Store it is given, and
//     turns features off (or serialises within one process only) for a
//     store without them. A wrapper must have exactly the capabilities it
//     can keep: one that always had Take would claim an atomic
//     read-and-delete an inner store without one cannot give, and one that
//     never had Swap would quietly end every login at its first expiry
//     instead of sliding it. New therefore takes an inner store with every
//     capability the shipped stores have (Inner), forwards those that carry
//     no values (Lock and its renewals, the Indexer, the Counter; a wrapper
//     that dropped renewals would leave a crashed instance's refresh lock
//     blocking its sessions for 30 s instead of 6), re-implements those that do
//     (Take, Swap, and GetStale when the inner store reads replicas), and
//     has no other.
//   - The contract. The wrapper keeps it by leaning on the inner store
//     (TTLs, key rules, ErrNotFound, failures, atomicity) and adding nothing
//     that could break it: Get returns a fresh slice the caller owns, Set
//     does not keep the caller's slice, and a value it cannot decrypt is a
//     failure (*storage.Error, so the library answers 503), never "not
//     found". Swap compares plaintexts but swaps the exact ciphertext it
//     read, so it stays one atomic step in the inner store.
//
// Each value is stored as a version byte, a random 96-bit nonce and the
// GCM ciphertext with its tag. The storage key is bound to it as additional
// data: a value copied to another key does not decrypt, so whoever can
// write to the database cannot move one user's record onto another's key.
//
// What is not encrypted: keys, lock names, set names and members, which the
// inner store must compare to find anything (the library keeps session ids
// in them only as hashes), counters (numbers under hashed keys), and TTLs.
// Locker (with RenewableLocker), Indexer and Counter are therefore
// forwarded unchanged.
//
// Key rotation is left out to keep the example short: the version byte is
// where a key id would go. With random nonces, rotate the key well before
// 2^32 values have been written under it.
package encryptedstore

import (
	"bytes"
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

// Inner is a store New can wrap: one with every capability the shipped
// stores have (memstore, sqlitestore, postgresstore, redisstore).
type Inner interface {
	storage.Store
	storage.Taker
	storage.RenewableLocker // Lock, and renewals of its leases
	storage.Indexer
	storage.Swapper
	storage.Counter
}

// New returns a Store that keeps every value in inner sealed with key
// (KeySize bytes). It has inner's capabilities: Taker, Locker and
// RenewableLocker, Indexer, Swapper and Counter, and storage.StaleReader
// exactly when inner has it.
func New(inner Inner, key []byte) (storage.Store, error) {
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
	s := &store{Inner: inner, aead: aead}
	if r, ok := inner.(storage.StaleReader); ok {
		return &staleStore{store: s, replica: r}, nil
	}
	return s, nil
}

// store wraps inner: Get, Set, Take and Swap decrypt or encrypt; Delete,
// Lock and its renewals, the Indexer and the Counter are inner's own (promoted from the
// embedded interface, which has no other method).
type store struct {
	Inner
	aead cipher.AEAD
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
	sealed, err := s.Inner.Get(ctx, key)
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
	return storage.Wrap("set", s.Inner.Set(ctx, key, sealed, ttl))
}

// Take implements storage.Taker: inner's atomic Take, then decryption.
func (s *store) Take(ctx context.Context, key string) ([]byte, error) {
	sealed, err := s.Inner.Take(ctx, key)
	if err != nil {
		return nil, storage.Wrap("take", err)
	}
	plain, err := s.open(key, sealed)
	if err != nil {
		return nil, storage.Wrap("take", err)
	}
	return plain, nil
}

// Swap implements storage.Swapper. The stored value is compared with old
// after decryption, and the swap itself is inner's, on the ciphertext read:
// a write that lands between the read and the swap changes the ciphertext,
// so inner's swap reports false, and the whole stays one atomic step.
func (s *store) Swap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	if ttl < 0 {
		return false, storage.Wrap("swap", fmt.Errorf("encryptedstore: negative TTL %v", ttl))
	}
	sealed, err := s.Inner.Get(ctx, key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	case err != nil:
		return false, storage.Wrap("swap", err)
	}
	plain, err := s.open(key, sealed)
	if err != nil {
		return false, storage.Wrap("swap", err)
	}
	if !bytes.Equal(plain, old) {
		return false, nil
	}
	next, err := s.seal(key, new)
	if err != nil {
		return false, storage.Wrap("swap", err)
	}
	ok, err := s.Inner.Swap(ctx, key, sealed, next, ttl)
	return ok, storage.Wrap("swap", err)
}

// staleStore is store over an inner store that reads replicas.
type staleStore struct {
	*store
	replica storage.StaleReader
}

// GetStale implements storage.StaleReader: inner's GetStale, then
// decryption.
func (s *staleStore) GetStale(ctx context.Context, key string) ([]byte, error) {
	sealed, err := s.replica.GetStale(ctx, key)
	if err != nil {
		return nil, storage.Wrap("get-stale", err)
	}
	plain, err := s.open(key, sealed)
	if err != nil {
		return nil, storage.Wrap("get-stale", err)
	}
	return plain, nil
}

// MaxStaleness implements storage.StaleReader: inner's bound.
func (s *staleStore) MaxStaleness() time.Duration { return s.replica.MaxStaleness() }
