package indigoclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
)

// Storage key patterns of the AuthStore:
//
//	oauth:req:{state}                pending authorization request (AuthRequestTTL)
//	oauth:sess:{did}:{session id}    OAuth session: tokens, DPoP key, nonces
const (
	authRequestPrefix = "oauth:req:"
	sessionPrefix     = "oauth:sess:"
)

// Defaults of the AuthStore.
const (
	DefaultAuthRequestTTL = 10 * time.Minute
	DefaultSessionTTL     = ginoauth.DefaultSessionTTL
)

// AuthStore is an indigo oauth.ClientAuthStore that keeps its data in a
// ginoauth.Storage, with the TTLs indigo leaves to the store: pending
// authorization requests expire after AuthRequestTTL, sessions after the
// lifetime of the login that created them. Updates of a session (rotated
// tokens, new nonces) keep its original expiry.
type AuthStore struct {
	storage        ginoauth.Storage
	authRequestTTL time.Duration
	sessionTTL     time.Duration
	log            *slog.Logger
	now            func() time.Time
}

var _ oauth.ClientAuthStore = (*AuthStore)(nil)

// AuthStoreOptions tune an AuthStore; zero values get defaults.
type AuthStoreOptions struct {
	AuthRequestTTL time.Duration // default 10 minutes
	// SessionTTL is used for sessions saved without a lifetime from the
	// Manager (that is, when indigo's ClientApp is used directly).
	SessionTTL time.Duration // default 7 days
	Logger     *slog.Logger
}

// NewAuthStore returns an AuthStore over storage.
func NewAuthStore(storage ginoauth.Storage, opts AuthStoreOptions) *AuthStore {
	if opts.AuthRequestTTL <= 0 {
		opts.AuthRequestTTL = DefaultAuthRequestTTL
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &AuthStore{storage: storage, authRequestTTL: opts.AuthRequestTTL, sessionTTL: opts.SessionTTL, log: opts.Logger, now: time.Now}
}

// storedSession wraps indigo's session data with its absolute expiry, so
// that saving rotated tokens can keep the TTL the login started with.
type storedSession struct {
	Data      oauth.ClientSessionData `json:"data"`
	ExpiresAt time.Time               `json:"expires_at"`
}

func sessionKey(did syntax.DID, sessionID string) string {
	return sessionPrefix + did.String() + ":" + sessionID
}

type sessionTTLKey struct{}

// withSessionTTL tells SaveSession the lifetime of a session being created.
func withSessionTTL(ctx context.Context, ttl time.Duration) context.Context {
	return context.WithValue(ctx, sessionTTLKey{}, ttl)
}

// GetSession implements oauth.ClientAuthStore. A missing or expired session
// gives an error wrapping ginoauth.ErrNotFound.
func (s *AuthStore) GetSession(ctx context.Context, did syntax.DID, sessionID string) (*oauth.ClientSessionData, error) {
	st, err := s.loadSession(ctx, did, sessionID)
	if err != nil {
		return nil, err
	}
	return &st.Data, nil
}

func (s *AuthStore) loadSession(ctx context.Context, did syntax.DID, sessionID string) (*storedSession, error) {
	raw, err := s.storage.Get(ctx, sessionKey(did, sessionID))
	if err != nil {
		return nil, ginoauth.WrapStorageError("get", err)
	}
	var st storedSession
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("indigoclient: unreadable session record: %w", ginoauth.ErrNotFound)
	}
	return &st, nil
}

// SaveSession implements oauth.ClientAuthStore as an upsert. A session being
// created at a callback gets the login's lifetime; an existing session keeps
// its expiry; otherwise the store's SessionTTL applies.
func (s *AuthStore) SaveSession(ctx context.Context, sess oauth.ClientSessionData) error {
	now := s.now()
	expires := now.Add(s.sessionTTL)
	if ttl, ok := ctx.Value(sessionTTLKey{}).(time.Duration); ok && ttl > 0 {
		expires = now.Add(ttl)
	} else if old, err := s.loadSession(ctx, sess.AccountDID, sess.SessionID); err == nil {
		expires = old.ExpiresAt
	} else if !errors.Is(err, ginoauth.ErrNotFound) {
		return err
	}
	return s.put(ctx, sess, expires)
}

// updateSession saves changed session data (rotated tokens, a new nonce) only
// if the session still exists, keeping its expiry. A session deleted by a
// concurrent logout therefore stays deleted.
func (s *AuthStore) updateSession(ctx context.Context, sess oauth.ClientSessionData) error {
	old, err := s.loadSession(ctx, sess.AccountDID, sess.SessionID)
	if err != nil {
		return err
	}
	return s.put(ctx, sess, old.ExpiresAt)
}

func (s *AuthStore) put(ctx context.Context, sess oauth.ClientSessionData, expires time.Time) error {
	ttl := expires.Sub(s.now())
	if ttl <= 0 {
		return fmt.Errorf("indigoclient: session already expired: %w", ginoauth.ErrNotFound)
	}
	raw, err := json.Marshal(storedSession{Data: sess, ExpiresAt: expires})
	if err != nil {
		return err
	}
	return ginoauth.WrapStorageError("set", s.storage.Set(ctx, sessionKey(sess.AccountDID, sess.SessionID), raw, ttl))
}

// DeleteSession implements oauth.ClientAuthStore.
func (s *AuthStore) DeleteSession(ctx context.Context, did syntax.DID, sessionID string) error {
	return ginoauth.WrapStorageError("delete", s.storage.Delete(ctx, sessionKey(did, sessionID)))
}

// GetAuthRequestInfo implements oauth.ClientAuthStore. It consumes the
// request (atomically when the Storage is a ginoauth.Taker): an authorization
// request is good for one callback, so a replayed callback finds nothing.
func (s *AuthStore) GetAuthRequestInfo(ctx context.Context, state string) (*oauth.AuthRequestData, error) {
	key := authRequestPrefix + state
	var raw []byte
	var err error
	if t, ok := s.storage.(ginoauth.Taker); ok {
		raw, err = t.Take(ctx, key)
	} else {
		raw, err = s.storage.Get(ctx, key)
		if err == nil {
			err = s.storage.Delete(ctx, key)
		}
	}
	if err != nil {
		return nil, ginoauth.WrapStorageError("take", err)
	}
	var info oauth.AuthRequestData
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, fmt.Errorf("indigoclient: unreadable auth request: %w", ginoauth.ErrNotFound)
	}
	return &info, nil
}

// SaveAuthRequestInfo implements oauth.ClientAuthStore.
func (s *AuthStore) SaveAuthRequestInfo(ctx context.Context, info oauth.AuthRequestData) error {
	raw, err := json.Marshal(info)
	if err != nil {
		return err
	}
	return ginoauth.WrapStorageError("set", s.storage.Set(ctx, authRequestPrefix+info.State, raw, s.authRequestTTL))
}

// DeleteAuthRequestInfo implements oauth.ClientAuthStore.
func (s *AuthStore) DeleteAuthRequestInfo(ctx context.Context, state string) error {
	return ginoauth.WrapStorageError("delete", s.storage.Delete(ctx, authRequestPrefix+state))
}
