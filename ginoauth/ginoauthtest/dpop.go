package ginoauthtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
)

// This file verifies compact JWS tokens: DPoP proofs (RFC 9449) and client
// assertions (RFC 7523, private_key_jwt). Only ES256 over P-256 is accepted,
// which is what the AT Protocol OAuth profile allows. Signatures are checked
// with indigo's atcrypto "lenient" verification (raw r||s, high-S allowed), as
// general purpose OAuth signers do not normalize S.

type jwsHeader struct {
	Alg  string          `json:"alg"`
	Typ  string          `json:"typ"`
	Kid  string          `json:"kid"`
	JWK  json.RawMessage `json:"jwk"`
	Crit []string        `json:"crit"`
}

// numericDate is a JWT NumericDate (seconds, possibly fractional).
type numericDate float64

func (n numericDate) time() time.Time {
	sec, frac := math.Modf(float64(n))
	return time.Unix(int64(sec), int64(frac*1e9))
}

// audience is a JWT aud claim: one string or an array of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("aud must be a string or an array of strings")
	}
	*a = many
	return nil
}

type jwtClaims struct {
	Iss   string       `json:"iss"`
	Sub   string       `json:"sub"`
	Aud   audience     `json:"aud"`
	Jti   string       `json:"jti"`
	Iat   *numericDate `json:"iat"`
	Exp   *numericDate `json:"exp"`
	Nbf   *numericDate `json:"nbf"`
	Htm   string       `json:"htm"`
	Htu   string       `json:"htu"`
	Nonce *string      `json:"nonce"`
	Ath   *string      `json:"ath"`
}

type parsedJWS struct {
	header       jwsHeader
	rawHeader    map[string]json.RawMessage
	claims       jwtClaims
	signingInput []byte
	sig          []byte
}

func decodeSegment(seg string) ([]byte, error) {
	if strings.ContainsAny(seg, "=+/") {
		return nil, errors.New("not base64url without padding")
	}
	return base64.RawURLEncoding.DecodeString(seg)
}

func parseJWS(tok string) (*parsedJWS, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS (want three dot-separated parts)")
	}
	hb, err := decodeSegment(parts[0])
	if err != nil {
		return nil, fmt.Errorf("header: %v", err)
	}
	pb, err := decodeSegment(parts[1])
	if err != nil {
		return nil, fmt.Errorf("payload: %v", err)
	}
	sig, err := decodeSegment(parts[2])
	if err != nil {
		return nil, fmt.Errorf("signature: %v", err)
	}
	var p parsedJWS
	if err := json.Unmarshal(hb, &p.rawHeader); err != nil {
		return nil, errors.New("header is not a JSON object")
	}
	if err := json.Unmarshal(hb, &p.header); err != nil {
		return nil, fmt.Errorf("header: %v", err)
	}
	if !isJSONObject(pb) {
		return nil, errors.New("payload is not a JSON object")
	}
	if err := json.Unmarshal(pb, &p.claims); err != nil {
		return nil, fmt.Errorf("claims: %v", err)
	}
	if len(p.header.Crit) > 0 {
		return nil, errors.New("unsupported crit header")
	}
	p.signingInput = []byte(parts[0] + "." + parts[1])
	p.sig = sig
	return &p, nil
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{'
}

// verifyES256 checks the raw r||s ES256 signature with a P-256 key.
func (p *parsedJWS) verifyES256(key atcrypto.PublicKey) error {
	if p.header.Alg != "ES256" {
		return fmt.Errorf("alg %q is not allowed (want ES256)", p.header.Alg)
	}
	if _, ok := key.(*atcrypto.PublicKeyP256); !ok {
		return errors.New("key is not a P-256 key")
	}
	if len(p.sig) != 64 {
		return errors.New("invalid ES256 signature length")
	}
	if err := key.HashAndVerifyLenient(p.signingInput, p.sig); err != nil {
		return errors.New("invalid signature")
	}
	return nil
}

// parsePublicJWK parses a P-256 public JWK and refuses private members.
func parsePublicJWK(raw json.RawMessage) (atcrypto.PublicKey, error) {
	if len(raw) == 0 {
		return nil, errors.New("missing jwk")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, errors.New("jwk is not a JSON object")
	}
	if _, ok := members["d"]; ok {
		return nil, errors.New("jwk contains a private key")
	}
	var jwk atcrypto.JWK
	if err := json.Unmarshal(raw, &jwk); err != nil {
		return nil, fmt.Errorf("jwk: %v", err)
	}
	if jwk.KeyType != "EC" || jwk.Curve != "P-256" {
		return nil, fmt.Errorf("jwk must be an EC P-256 key (got kty=%q crv=%q)", jwk.KeyType, jwk.Curve)
	}
	key, err := atcrypto.ParsePublicJWK(jwk)
	if err != nil {
		return nil, fmt.Errorf("jwk: %v", err)
	}
	return key, nil
}

// jwkThumbprint is the RFC 7638 SHA-256 thumbprint of a P-256 key, over the
// canonical members with full-length (32 byte) coordinates.
func jwkThumbprint(key atcrypto.PublicKey) string {
	p256 := key.(*atcrypto.PublicKeyP256)
	raw := p256.UncompressedBytes() // 0x04 || X || Y
	x := base64.RawURLEncoding.EncodeToString(raw[1:33])
	y := base64.RawURLEncoding.EncodeToString(raw[33:65])
	canon := `{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// s256 is base64url(SHA-256(v)), used for PKCE challenges and ath.
func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// dpopError is a rejected DPoP proof. code is "use_dpop_nonce" or
// "invalid_dpop_proof".
type dpopError struct {
	code string
	desc string
}

func (e *dpopError) Error() string { return e.code + ": " + e.desc }

func badProof(format string, args ...any) *dpopError {
	return &dpopError{code: "invalid_dpop_proof", desc: fmt.Sprintf(format, args...)}
}

// dpopProof is what a verified proof tells the server.
type dpopProof struct {
	jkt string // thumbprint of the proof key
}

// checkDPoP verifies the DPoP header of r. accessToken is the token from the
// Authorization header at the resource server, or "" at the authorization
// server; when set, the proof must carry a matching ath.
//
// Checks, in order: exactly one DPoP header; compact JWS; typ dpop+jwt; alg
// ES256; an embedded public P-256 jwk; the signature; jti present; htm equal
// to the request method; htu equal to https://<host><path> (query and
// fragment ignored); iat fresh; exp not passed; then the nonce (the current
// or previous server nonce); then ath; and last, that the jti was never seen.
func (s *Server) checkDPoP(r *http.Request, accessToken string) (*dpopProof, *dpopError) {
	vals := r.Header.Values("DPoP")
	if len(vals) == 0 {
		return nil, badProof("missing DPoP proof")
	}
	if len(vals) > 1 {
		return nil, badProof("more than one DPoP header")
	}
	p, err := parseJWS(vals[0])
	if err != nil {
		return nil, badProof("malformed DPoP proof: %v", err)
	}
	if p.header.Typ != "dpop+jwt" {
		return nil, badProof("DPoP proof typ must be dpop+jwt")
	}
	if p.header.Alg != "ES256" {
		return nil, badProof("DPoP proof alg must be ES256")
	}
	key, err := parsePublicJWK(p.header.JWK)
	if err != nil {
		return nil, badProof("DPoP proof key: %v", err)
	}
	if err := p.verifyES256(key); err != nil {
		return nil, badProof("DPoP proof: %v", err)
	}
	c := &p.claims
	if c.Jti == "" || len(c.Jti) > 256 {
		return nil, badProof("DPoP proof jti missing or too long")
	}
	if c.Htm != r.Method {
		return nil, badProof("DPoP htm mismatch")
	}
	if !s.htuMatches(c.Htu, r) {
		return nil, badProof("DPoP htu mismatch")
	}
	wall := time.Now()
	if c.Iat == nil {
		return nil, badProof("DPoP proof iat missing")
	}
	iat := c.Iat.time()
	if iat.Before(wall.Add(-proofMaxAge)) {
		return nil, badProof("DPoP proof too old")
	}
	if iat.After(wall.Add(proofMaxFuture)) {
		return nil, badProof("DPoP proof iat is in the future")
	}
	if c.Exp != nil && !wall.Before(c.Exp.time()) {
		return nil, badProof("DPoP proof expired")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	cur, prev := s.noncesLocked()
	if c.Nonce == nil || *c.Nonce == "" || (*c.Nonce != cur && *c.Nonce != prev) {
		s.stats.NonceChallenges++
		if c.Nonce == nil || *c.Nonce == "" {
			return nil, &dpopError{code: "use_dpop_nonce", desc: "Authorization server requires nonce in DPoP proof"}
		}
		return nil, &dpopError{code: "use_dpop_nonce", desc: "DPoP nonce mismatch"}
	}
	if accessToken != "" {
		if c.Ath == nil || *c.Ath == "" {
			return nil, badProof("DPoP proof ath missing")
		}
		if *c.Ath != s256(accessToken) {
			return nil, badProof("DPoP ath mismatch")
		}
	}
	s.sweepLocked()
	if _, seen := s.proofJTIs[c.Jti]; seen {
		return nil, badProof("DPoP proof replayed (jti already used)")
	}
	s.proofJTIs[c.Jti] = wall.Add(proofMaxAge + proofMaxFuture + time.Minute)
	return &dpopProof{jkt: jwkThumbprint(key)}, nil
}

// htuMatches compares the proof's htu with https://<host><path>, ignoring
// the query and fragment of htu (RFC 9449, section 4.3).
func (s *Server) htuMatches(htu string, r *http.Request) bool {
	u, err := url.Parse(htu)
	if err != nil || u.Opaque != "" || u.User != nil {
		return false
	}
	host := strings.ToLower(u.Host)
	if host != s.host {
		// Another of its PDS hosts: the proof names the one it was sent to.
		s.mu.Lock()
		extra := s.pdsHosts[host]
		s.mu.Unlock()
		if !extra || !strings.EqualFold(strings.TrimSuffix(r.Host, ":443"), host) {
			return false
		}
	}
	return strings.EqualFold(u.Scheme, "https") && u.Path == r.URL.Path
}

// nonceState holds the DPoP nonces. Rotation is lazy: it happens when a
// request sees that the current nonce is older than the rotation period.
type nonceState struct {
	current, previous string
	rotatedAt         time.Time
}

func (s *Server) noncesLocked() (current, previous string) {
	now := s.now()
	n := &s.nonce
	switch {
	case n.current == "":
		n.current, n.rotatedAt = randomToken()[:22], now
	case now.Sub(n.rotatedAt) >= 2*s.nonceRotation:
		n.previous, n.current, n.rotatedAt = "", randomToken()[:22], now
	case now.Sub(n.rotatedAt) >= s.nonceRotation:
		n.previous, n.current, n.rotatedAt = n.current, randomToken()[:22], now
	}
	return n.current, n.previous
}

// DPoPNonce returns the server's current DPoP nonce, for tests that build
// proofs by hand and want to skip the use_dpop_nonce round trip.
func (s *Server) DPoPNonce() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, _ := s.noncesLocked()
	return cur
}

// RotateDPoPNonce replaces the current DPoP nonce with a new one at once;
// the replaced nonce stays valid as the previous one. Call it twice to make
// every nonce a client holds stale, and so test the client's
// use_dpop_nonce retry.
func (s *Server) RotateDPoPNonce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noncesLocked()
	s.nonce.previous, s.nonce.current, s.nonce.rotatedAt = s.nonce.current, randomToken()[:22], s.now()
}

// sweepLocked forgets expired replay-cache entries and long-dead requests
// and codes. It runs at most once every 30 seconds (server clock).
func (s *Server) sweepLocked() {
	now := s.now()
	if now.Sub(s.lastSweep) < 30*time.Second {
		return
	}
	s.lastSweep = now
	wall := time.Now()
	for k, until := range s.proofJTIs {
		if wall.After(until) {
			delete(s.proofJTIs, k)
		}
	}
	for k, until := range s.assertJTIs {
		if wall.After(until) {
			delete(s.assertJTIs, k)
		}
	}
	for k, r := range s.requests {
		if now.Sub(r.expires) > time.Hour {
			delete(s.requests, k)
		}
	}
	for k, c := range s.codes {
		if now.Sub(c.expires) > time.Hour {
			delete(s.codes, k)
		}
	}
}
