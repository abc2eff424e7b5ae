package ginoauth

import "github.com/gin-atproto/oauth-sessions/ginoauth/storage"

// Storage is the key-value store the Manager keeps flows and session
// records in: any storage.Store (see package storage for the contract and
// the optional Taker and Locker capabilities, and the stores directory for
// SQLite, Postgres, Redis and memory).
type Storage = storage.Store

// StorageError reports that the Storage failed to answer (a *storage.Error).
// The prebuilt handlers and the middleware answer it with 503.
type StorageError = storage.Error

// ErrNotFound is storage.ErrNotFound: a key that does not exist or expired.
var ErrNotFound = storage.ErrNotFound
