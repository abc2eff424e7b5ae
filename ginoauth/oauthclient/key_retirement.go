package oauthclient

import (
	"context"
	"fmt"
)

// ErrKeyRetired: the OAuth session is bound to a client key that the client
// has retired (a confidential client binds each session to the key that
// authenticated its login). It wraps ErrSessionGone, so code that handles
// gone sessions handles it too; ginoauth ends the device session with its
// own reason and revokes the tokens with the retired key, which may still
// sign the revocation of its own sessions but nothing else.
var ErrKeyRetired = fmt.Errorf("%w: it is bound to a client key that was retired", ErrSessionGone)

// KeyRetirement is an optional Client capability of a confidential client
// that holds several signing keys and can retire one. ginoauth calls it when
// it starts and then about once a minute, and ends the device session of
// every OAuth session it lists (tokens revoked, EndKeyRetired), so that a
// retired key's logins end whether or not they are used.
type KeyRetirement interface {
	// SessionsOfRetiredKeys lists the OAuth sessions still bound to a key
	// the client has retired; none (and no storage access) when it has
	// retired no key. An OAuth session stays listed until Revoke removes it
	// or it expires.
	SessionsOfRetiredKeys(ctx context.Context) ([]SessionRef, error)
}

// SessionRef names one OAuth session of a client: the account and the
// client's session id, as Resume and Revoke take them.
type SessionRef struct {
	DID       string
	SessionID string
}
