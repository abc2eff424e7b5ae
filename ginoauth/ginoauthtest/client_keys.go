package ginoauthtest

import (
	"context"
	"errors"
	"fmt"
)

// This file binds a confidential client's sessions to its keys, as the
// reference server does (the AT Protocol OAuth spec, "Confidential Client
// Authentication"; @atproto/oauth-provider's validateClientAuth): the PAR's
// client assertion fixes the key (kid, alg and the key's RFC 7638
// thumbprint), the code exchange and every refresh must be signed with that
// same key, and so must a revocation of the session's tokens. Whenever the
// server reads a client's metadata again (every request of a client whose
// document it fetches, a new RegisterClient, RefreshClientMetadata), it
// ends the sessions whose key has left the document. Public clients have no
// key and are not affected.

// clientAuth is how a request authenticated its client: nothing for a
// public client, else the key of its assertion.
type clientAuth struct {
	kid string
	alg string
	jkt string // RFC 7638 thumbprint of the client's public key
}

// endReasonKeyRemoved is the EndReason of a session whose client key left
// the client's metadata.
const endReasonKeyRemoved = "client key removed from the client metadata"

// errKeyMismatch is the reference server's answer to an assertion signed
// with another key than the session's.
const errKeyMismatch = "The session was initiated with a different key than the client assertion currently used"

// sameKey reports whether auth may act for what is bound to bound: the same
// key, or (like the reference) any authentication of a client that was
// public when the session began and has become confidential since.
func (a clientAuth) sameKey(bound clientAuth) bool { return bound.kid == "" || a == bound }

// keyMismatchLocked counts an assertion signed with the wrong key.
func (s *Server) keyMismatchLocked() { s.stats.KeyMismatches++ }

// endSessionsWithoutKeyLocked ends the live sessions of a confidential
// client whose key is not in ci's keys (just read from its metadata), and
// returns how many it ended.
func (s *Server) endSessionsWithoutKeyLocked(ci *clientInfo) int {
	if !ci.confidential {
		return 0
	}
	n := 0
	for _, id := range s.sessionList {
		sess := s.sessions[id]
		if sess.clientID != ci.id || sess.endReason != "" || sess.clientAuth.kid == "" {
			continue
		}
		key, ok := ci.keys[sess.clientAuth.kid]
		if ok && jwkThumbprint(key) == sess.clientAuth.jkt {
			continue
		}
		s.endSessionLocked(sess, endReasonKeyRemoved)
		s.stats.SessionsRevoked++
		n++
		s.log.Info("session revoked: its client key left the client metadata", "session", sess.id, "did", sess.did, "kid", sess.clientAuth.kid)
	}
	return n
}

// RefreshClientMetadata reads the metadata of clientID again, as the
// reference server does from time to time (fetched again with the client
// set by [Server.SetClientMetadataClient], or the document last given to
// [Server.RegisterClient]), and ends every live session of that client
// whose key (kid and public key) is no longer in it. It returns how many
// sessions it ended. The server does the same by itself at every PAR, token
// and revocation request of a client whose document it fetches.
func (s *Server) RefreshClientMetadata(ctx context.Context, clientID string) (int, error) {
	ci, _, err := s.readClient(ctx, clientID)
	if err != nil {
		return 0, fmt.Errorf("ginoauthtest: client metadata of %s: %w", clientID, err)
	}
	if ci.localhost {
		return 0, errors.New("ginoauthtest: a loopback client has no metadata document")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endSessionsWithoutKeyLocked(ci), nil
}
