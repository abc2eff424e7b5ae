package indigoclient

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// Storage key patterns of the AuthStore:
//
//	oauth:req:{state}                pending authorization request (AuthRequestTTL)
//	oauth:sess:{did}:{session id}    OAuth session: tokens, DPoP key, and its expiry
const (
	authRequestPrefix = "oauth:req:"
	sessionPrefix     = "oauth:sess:"
)

// The defaults AuthStoreOptions and Options document.
const (
	defaultAuthRequestTTL = 10 * time.Minute
	defaultSessionTTL     = 7 * 24 * time.Hour
	// The reference authorization server's limits on a grant (token
	// responses do not state them): a public client's grant ends two weeks
	// after the login; a confidential client's lives two years if its
	// refresh token is used at least every three months.
	publicGrantLifetime           = 14 * 24 * time.Hour
	confidentialGrantLifetime     = 2 * 365 * 24 * time.Hour
	confidentialRefreshInactivity = 90 * 24 * time.Hour
	// defaultStorageTimeout bounds each storage operation, so that a
	// stalled database turns into a quick error instead of a hung request.
	defaultStorageTimeout = 3 * time.Second
)

// maxSpent is how many rotated-out refresh tokens a session record
// remembers (as hashes) to recognise a stale copy of itself.
const maxSpent = 8

// errStaleTokens reports a save of tokens older than the stored ones; the
// save is refused, since writing them back would make the next refresh a
// replay.
var errStaleTokens = errors.New("indigoclient: refusing to replace stored tokens with older ones")

// AuthStore is an indigo oauth.ClientAuthStore that keeps its data in a
// storage.Store, with the TTLs indigo leaves to the store: pending
// authorization requests expire after AuthRequestTTL, sessions after the
// lifetime of the login that created them.
//
// It never writes older tokens over newer ones. Refresh tokens are single
// use, and the reference PDS ends the whole session when a spent one comes
// back, so a stale copy in storage logs the user out at the next refresh.
// Each record remembers the hashes of the refresh tokens rotated out of it;
// a save whose refresh token is the stored one (only DPoP nonces changed:
// indigo saves its whole session data on every nonce update) or a spent
// one (a copy loaded before another request rotated the tokens) does not
// touch the stored tokens. DPoP nonces are kept in process memory instead
// (they are hints a server replaces at will; a missing one costs one round
// trip), so the token fields are written only when the tokens rotate, and
// the Client rotates them only under the refresh lock.
type AuthStore struct {
	storage        storage.Store
	authRequestTTL time.Duration
	sessionTTL     time.Duration
	grantLifetime  time.Duration
	refreshIdle    time.Duration
	timeout        time.Duration
	nonces         *nonceCache
	log            *slog.Logger
	now            func() time.Time
}

var _ oauth.ClientAuthStore = (*AuthStore)(nil)

// AuthStoreOptions tune an AuthStore; zero values get defaults.
type AuthStoreOptions struct {
	// AuthRequestTTL bounds a pending authorization saved without the
	// login's own lifetime (that is, when indigo's ClientApp is used
	// directly). Default 10 minutes.
	AuthRequestTTL time.Duration
	// SessionTTL is used for sessions saved without a lifetime from the
	// Manager (that is, when indigo's ClientApp is used directly).
	SessionTTL time.Duration // default 7 days
	// GrantLifetime is how long after the login a grant ends whatever
	// happens, and RefreshInactivity how long its refresh token lives
	// unused; an OAuth session is kept exactly as long as these allow.
	// Defaults: the reference server's limits for a public client (two
	// weeks from the login, both); New sets a confidential client's (two
	// years; three months).
	GrantLifetime, RefreshInactivity time.Duration
	// Now is the clock for the grant's limits. Default time.Now; tests set
	// it together with the Manager's and the authorization server's.
	Now func() time.Time
	// StorageTimeout bounds each storage operation. Default 3 seconds.
	StorageTimeout time.Duration
	Logger         *slog.Logger
}

// NewAuthStore returns an AuthStore over storage.
func NewAuthStore(storage storage.Store, opts AuthStoreOptions) *AuthStore {
	if opts.AuthRequestTTL <= 0 {
		opts.AuthRequestTTL = defaultAuthRequestTTL
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = defaultSessionTTL
	}
	if opts.StorageTimeout <= 0 {
		opts.StorageTimeout = defaultStorageTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.GrantLifetime <= 0 {
		opts.GrantLifetime = publicGrantLifetime
	}
	if opts.RefreshInactivity <= 0 || opts.RefreshInactivity > opts.GrantLifetime {
		opts.RefreshInactivity = opts.GrantLifetime
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &AuthStore{
		storage: storage, authRequestTTL: opts.AuthRequestTTL, sessionTTL: opts.SessionTTL,
		grantLifetime: opts.GrantLifetime, refreshIdle: opts.RefreshInactivity,
		timeout: opts.StorageTimeout, nonces: newNonceCache(), log: opts.Logger, now: opts.Now,
	}
}

// storedSession wraps indigo's session data with the grant's limits, so
// that the record lives exactly as long as the grant can (ExpiresAt, its
// storage expiry, moves forward with each refresh, up to EndsAt), with the
// hashes of the refresh tokens rotated out of it, and with the client key
// the session is bound to (indigo's data has no key id).
type storedSession struct {
	Data oauth.ClientSessionData `json:"data"`
	// ExpiresAt is when the grant dies unless refreshed before: the
	// earlier of EndsAt and the last refresh plus the refresh inactivity
	// limit.
	ExpiresAt time.Time `json:"expires_at"`
	// EndsAt is when the grant ends whatever happens: the login plus the
	// grant's lifetime, or less when the Manager asked for less. Zero in
	// records written before it was kept: ExpiresAt then.
	EndsAt    time.Time `json:"ends_at,omitzero"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	// KeyID is the kid of the confidential client key that authenticated
	// the login; every assertion for the session is signed with it. Empty
	// for public clients and for sessions stored before key sets.
	KeyID string `json:"client_kid,omitempty"`
	// Generation counts token rotations since the login.
	Generation int `json:"generation,omitempty"`
	// Spent are hashes of rotated-out refresh tokens, oldest first.
	Spent []string `json:"spent,omitempty"`
}

func (st *storedSession) isSpent(refreshToken string) bool {
	return slices.Contains(st.Spent, tokenHash(refreshToken))
}

func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

func sessionKey(did syntax.DID, sessionID string) string {
	return sessionPrefix + did.String() + ":" + sessionID
}

type requestTTLKey struct{}

// withRequestTTL tells SaveAuthRequestInfo how long the login may take.
func withRequestTTL(ctx context.Context, ttl time.Duration) context.Context {
	return context.WithValue(ctx, requestTTLKey{}, ttl)
}

// requestTTL is the lifetime of a pending login: the login's own, else def.
func requestTTL(ttl, def time.Duration) time.Duration {
	if ttl > 0 {
		return ttl
	}
	return def
}

// op bounds one storage operation by the store's timeout.
func (s *AuthStore) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// GetSession implements oauth.ClientAuthStore. A missing or expired session
// gives an error wrapping storage.ErrNotFound. The DPoP nonces are the
// freshest this process has seen.
func (s *AuthStore) GetSession(ctx context.Context, did syntax.DID, sessionID string) (*oauth.ClientSessionData, error) {
	st, err := s.loadSession(ctx, did, sessionID)
	if err != nil {
		return nil, err
	}
	s.nonces.apply(&st.Data)
	return &st.Data, nil
}

func (s *AuthStore) loadSession(ctx context.Context, did syntax.DID, sessionID string) (*storedSession, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	raw, err := s.storage.Get(ctx, sessionKey(did, sessionID))
	if err != nil {
		return nil, storage.Wrap("get", err)
	}
	var st storedSession
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("indigoclient: unreadable session record: %w", storage.ErrNotFound)
	}
	return &st, nil
}

// SaveSession implements oauth.ClientAuthStore. Sessions made at a callback
// are written by Client (with the login's lifetime and key), not here. For an
// existing session only a rotation is written (keeping its expiry): a save carrying the stored
// refresh token or a spent one records its DPoP nonces in memory and leaves
// storage alone (see AuthStore). A session saved without a lifetime that
// does not exist yet gets the store's SessionTTL.
func (s *AuthStore) SaveSession(ctx context.Context, sess oauth.ClientSessionData) error {
	s.nonces.remember(&sess)
	old, err := s.loadSession(ctx, sess.AccountDID, sess.SessionID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return s.put(ctx, s.newSession(sess, s.sessionTTL))
	case err != nil:
		return err
	case old.Data.RefreshToken == sess.RefreshToken:
		return nil // nonces only
	case old.isSpent(sess.RefreshToken):
		s.log.Debug("ignored a stale copy of an OAuth session", "did", sess.AccountDID, "session", shortHash(sess.SessionID))
		return nil
	}
	return s.put(ctx, s.rotated(old, sess))
}

// create stores a session a login has just made, bound to the client key
// kid ("" for a public client), to be kept for at most maxAge, and returns
// its record.
func (s *AuthStore) create(ctx context.Context, sess oauth.ClientSessionData, maxAge time.Duration, kid string) (*storedSession, error) {
	s.nonces.remember(&sess)
	st := s.newSession(sess, maxAge)
	st.KeyID = kid
	return st, s.put(ctx, st)
}

// newSession is the record of a grant made now, kept for at most maxAge.
func (s *AuthStore) newSession(sess oauth.ClientSessionData, maxAge time.Duration) *storedSession {
	now := s.now()
	ends := now.Add(min(maxAge, s.grantLifetime))
	return &storedSession{Data: sess, CreatedAt: now, EndsAt: ends, ExpiresAt: minTime(ends, now.Add(s.refreshIdle))}
}

// limits returns the grant's refresh-by and end times.
func (st *storedSession) limits() (refreshBy, endsAt time.Time) {
	if st.EndsAt.IsZero() {
		return st.ExpiresAt, st.ExpiresAt
	}
	return st.ExpiresAt, st.EndsAt
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// saveRotated stores the tokens a refresh produced from the refresh token
// spent. It succeeds when they are saved (also when an earlier attempt of
// the same save already landed), returns an error wrapping ErrNotFound when
// the session no longer exists (so a logout is never undone), and
// errStaleTokens when the stored tokens are no longer the ones spent.
func (s *AuthStore) saveRotated(ctx context.Context, sess oauth.ClientSessionData, spent string) error {
	s.nonces.remember(&sess)
	old, err := s.loadSession(ctx, sess.AccountDID, sess.SessionID)
	switch {
	case err != nil:
		return err
	case old.Data.RefreshToken == sess.RefreshToken:
		// A retry after a save that failed may read back the write it
		// reported failed: on a replicated store, a value the primary has
		// and its replicas may not (redisstore's ErrNotReplicated). Store
		// it again until a save succeeds, not take the read as saved.
		return s.put(ctx, old)
	case old.Data.RefreshToken != spent:
		return errStaleTokens
	}
	return s.put(ctx, s.rotated(old, sess))
}

// rotated is st with sess's tokens, one generation on, still bound to the
// same client key: refreshed now, so the grant can live another
// RefreshInactivity, up to its end.
func (s *AuthStore) rotated(st *storedSession, sess oauth.ClientSessionData) *storedSession {
	spent := append(slices.Clone(st.Spent), tokenHash(st.Data.RefreshToken))
	if len(spent) > maxSpent {
		spent = spent[len(spent)-maxSpent:]
	}
	next := &storedSession{Data: sess, ExpiresAt: st.ExpiresAt, EndsAt: st.EndsAt, CreatedAt: st.CreatedAt, Generation: st.Generation + 1, Spent: spent, KeyID: st.KeyID}
	if !st.EndsAt.IsZero() {
		next.ExpiresAt = minTime(st.EndsAt, s.now().Add(s.refreshIdle))
	}
	return next
}

func (s *AuthStore) put(ctx context.Context, st *storedSession) error {
	ttl := st.ExpiresAt.Sub(s.now())
	if ttl <= 0 {
		return fmt.Errorf("indigoclient: session already expired: %w", storage.ErrNotFound)
	}
	// Nonces live in memory; storing them would only make the record look
	// changed on every nonce round.
	st.Data.DPoPHostNonce, st.Data.DPoPAuthServerNonce = "", ""
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	return storage.Wrap("set", s.storage.Set(ctx, sessionKey(st.Data.AccountDID, st.Data.SessionID), raw, ttl))
}

// DeleteSession implements oauth.ClientAuthStore.
func (s *AuthStore) DeleteSession(ctx context.Context, did syntax.DID, sessionID string) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	return storage.Wrap("delete", s.storage.Delete(ctx, sessionKey(did, sessionID)))
}

// storedAuthRequest is indigo's pending request and the kid of the client
// key its PAR was signed with, which the code exchange must use too. The
// embedded fields keep indigo's JSON layout, so requests stored before key
// sets read with no kid.
type storedAuthRequest struct {
	oauth.AuthRequestData
	ClientKeyID string `json:"client_kid,omitempty"`
}

// GetAuthRequestInfo implements oauth.ClientAuthStore. It consumes the
// request (atomically when the Storage is a storage.Taker): an authorization
// request is good for one callback, so a replayed callback finds nothing.
func (s *AuthStore) GetAuthRequestInfo(ctx context.Context, state string) (*oauth.AuthRequestData, error) {
	r, err := s.takeAuthRequest(ctx, state)
	if err != nil {
		return nil, err
	}
	return &r.AuthRequestData, nil
}

// takeAuthRequest is GetAuthRequestInfo with the request's client key.
func (s *AuthStore) takeAuthRequest(ctx context.Context, state string) (*storedAuthRequest, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	raw, err := storage.Take(ctx, s.storage, authRequestPrefix+state)
	if err != nil {
		return nil, err
	}
	var r storedAuthRequest
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("indigoclient: unreadable auth request: %w", storage.ErrNotFound)
	}
	return &r, nil
}

// SaveAuthRequestInfo implements oauth.ClientAuthStore. The request is kept
// for the login's lifetime when the Client passes it on (the Manager's
// FlowTTL), else for AuthRequestTTL.
func (s *AuthStore) SaveAuthRequestInfo(ctx context.Context, info oauth.AuthRequestData) error {
	return s.saveAuthRequest(ctx, &storedAuthRequest{AuthRequestData: info})
}

func (s *AuthStore) saveAuthRequest(ctx context.Context, r *storedAuthRequest) error {
	info := &r.AuthRequestData
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ttl := s.authRequestTTL
	if d, ok := ctx.Value(requestTTLKey{}).(time.Duration); ok && d > 0 {
		ttl = d
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	return storage.Wrap("set", s.storage.Set(ctx, authRequestPrefix+info.State, raw, ttl))
}

// DeleteAuthRequestInfo implements oauth.ClientAuthStore.
func (s *AuthStore) DeleteAuthRequestInfo(ctx context.Context, state string) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	return storage.Wrap("delete", s.storage.Delete(ctx, authRequestPrefix+state))
}
