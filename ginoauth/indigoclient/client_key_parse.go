package indigoclient

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
)

// This file reads a confidential client's private key from the text formats
// people have it in. AT Protocol client assertions are ES256, so only P-256
// keys are accepted; every other key gives an error that says what to do.

// maxKeyText bounds the text ParsePrivateKey reads: a PEM key is well under
// 1 KiB, and goat's whole output about 300 bytes.
const maxKeyText = 16 << 10

// notP256 explains why other curves cannot be used.
const notP256 = "AT Protocol client assertions are ES256, which needs a P-256 key (goat key generate -t P-256, or openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)"

// ParsePrivateKey reads a P-256 private key for signing client assertions
// from any of these forms:
//
//   - a private JWK ({"kty":"EC","crv":"P-256","d":...}); x and y, when
//     present, must belong to d;
//   - PEM: PKCS#8 ("BEGIN PRIVATE KEY", as openssl genpkey writes it) or
//     SEC1 ("BEGIN EC PRIVATE KEY", as openssl ecparam -genkey writes it);
//   - a multibase private key ("z42t..."), as goat key generate prints it,
//     or goat's whole output, from which the secret key line is taken.
//
// Surrounding whitespace is ignored. Anything else, including other curves,
// public keys and encrypted PEM, is an error that says why; the error never
// contains the key text.
func ParsePrivateKey(text []byte) (*atcrypto.PrivateKeyP256, error) {
	key, _, err := parseKeyText(text)
	return key, err
}

// ParseClientKey is ParsePrivateKey for a key of a KeySet: it returns the
// key with its ID and State. id may be empty when text is a JWK with a kid,
// which is then the ID; a kid that differs from id is an error.
func ParseClientKey(id string, text []byte, state KeyState) (ClientKey, error) {
	key, kid, err := parseKeyText(text)
	if err != nil {
		return ClientKey{}, err
	}
	switch {
	case id == "" && kid == "":
		return ClientKey{}, errors.New("indigoclient: client key: no ID given, and the key text names no kid")
	case id == "":
		id = kid
	case kid != "" && kid != id:
		return ClientKey{}, fmt.Errorf("indigoclient: client key %q: the JWK's kid is %q", id, kid)
	}
	return ClientKey{ID: id, Key: key, State: state}, nil
}

// parseKeyText is ParsePrivateKey that also returns a JWK's kid.
func parseKeyText(text []byte) (*atcrypto.PrivateKeyP256, string, error) {
	if len(text) > maxKeyText {
		return nil, "", fmt.Errorf("indigoclient: client key: %d bytes is too long for a key", len(text))
	}
	t := bytes.TrimSpace(text)
	switch {
	case len(t) == 0:
		return nil, "", errors.New("indigoclient: client key: empty")
	case t[0] == '{':
		return parseJWKKey(t)
	case bytes.HasPrefix(t, []byte("-----BEGIN")):
		k, err := parsePEMKey(t)
		return k, "", err
	case bytes.Contains(t, []byte("Secret Key (Multibase Syntax)")):
		k, err := parseGoatOutput(t)
		return k, "", err
	case t[0] == 'z':
		k, err := parseMultibaseKey(string(t))
		return k, "", err
	case bytes.HasPrefix(t, []byte("did:key:")):
		return nil, "", errors.New("indigoclient: client key: this is a public key (did:key); give the secret key goat printed above it")
	}
	return nil, "", errors.New("indigoclient: client key: not a JWK, PEM or multibase private key")
}

func parseMultibaseKey(s string) (*atcrypto.PrivateKeyP256, error) {
	if strings.ContainsAny(s, " \t\r\n") {
		return nil, errors.New("indigoclient: client key: a multibase key is one word; this text has several")
	}
	k, err := atcrypto.ParsePrivateMultibase(s)
	if err != nil {
		if _, perr := atcrypto.ParsePublicMultibase(s); perr == nil {
			return nil, errors.New("indigoclient: client key: this is a public key; give the secret key")
		}
		return nil, fmt.Errorf("indigoclient: client key: not a multibase private key: %w", err)
	}
	p, ok := k.(*atcrypto.PrivateKeyP256)
	if !ok {
		return nil, errors.New("indigoclient: client key: a K-256 (secp256k1) key; " + notP256)
	}
	return p, nil
}

// parseGoatOutput takes the secret key from goat key generate's plain
// output: the first word of the line after "Secret Key (Multibase Syntax)".
func parseGoatOutput(t []byte) (*atcrypto.PrivateKeyP256, error) {
	lines := strings.Split(string(t), "\n")
	for i, l := range lines {
		if strings.Contains(l, "Secret Key (Multibase Syntax)") && i+1 < len(lines) {
			if f := strings.Fields(lines[i+1]); len(f) == 1 {
				return parseMultibaseKey(f[0])
			}
		}
	}
	return nil, errors.New("indigoclient: client key: goat output without a secret key on the line after \"Secret Key (Multibase Syntax)\"")
}

func parsePEMKey(t []byte) (*atcrypto.PrivateKeyP256, error) {
	block, rest := pem.Decode(t)
	if block == nil {
		return nil, errors.New("indigoclient: client key: malformed PEM")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("indigoclient: client key: more than one PEM block; give the private key alone")
	}
	var (
		parsed any
		err    error
	)
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("indigoclient: client key: an encrypted PEM key; decrypt it first (openssl pkcs8 -in key.pem -out plain.pem)")
	case "PUBLIC KEY", "EC PUBLIC KEY", "CERTIFICATE":
		return nil, fmt.Errorf("indigoclient: client key: a PEM %s, not a private key", strings.ToLower(block.Type))
	case "EC PARAMETERS":
		return nil, errors.New("indigoclient: client key: PEM curve parameters only; the private key block must come alone (openssl ecparam -noout)")
	default:
		return nil, fmt.Errorf("indigoclient: client key: PEM block %q is not a private key (want PRIVATE KEY or EC PRIVATE KEY)", block.Type)
	}
	if err != nil {
		if strings.Contains(err.Error(), "unknown elliptic curve") || strings.Contains(err.Error(), "unsupported elliptic curve") {
			return nil, errors.New("indigoclient: client key: the PEM key is not on P-256; " + notP256)
		}
		return nil, fmt.Errorf("indigoclient: client key: unreadable PEM private key: %w", err)
	}
	ec, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("indigoclient: client key: a %s key; %s", keyKind(parsed), notP256)
	}
	if ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("indigoclient: client key: an EC key on %s; %s", ec.Curve.Params().Name, notP256)
	}
	raw, err := ec.Bytes()
	if err != nil {
		return nil, fmt.Errorf("indigoclient: client key: %w", err)
	}
	return atcrypto.ParsePrivateBytesP256(raw)
}

func keyKind(k any) string {
	switch fmt.Sprintf("%T", k) {
	case "*rsa.PrivateKey":
		return "RSA"
	case "ed25519.PrivateKey":
		return "Ed25519"
	case "*ecdh.PrivateKey":
		return "X25519"
	}
	return "non-EC"
}

// privateJWK is the members of a private EC JWK that matter here.
type privateJWK struct {
	Kty  string          `json:"kty"`
	Crv  string          `json:"crv"`
	X    string          `json:"x"`
	Y    string          `json:"y"`
	D    string          `json:"d"`
	Kid  string          `json:"kid"`
	Alg  string          `json:"alg"`
	Keys json.RawMessage `json:"keys"`
}

func parseJWKKey(t []byte) (*atcrypto.PrivateKeyP256, string, error) {
	var j privateJWK
	if err := json.Unmarshal(t, &j); err != nil {
		return nil, "", errors.New("indigoclient: client key: not valid JSON for a JWK")
	}
	switch {
	case len(j.Keys) > 0:
		return nil, "", errors.New("indigoclient: client key: a JWK set; give one key (one member of \"keys\")")
	case j.Kty != "EC":
		return nil, "", fmt.Errorf("indigoclient: client key: JWK kty %q; %s", j.Kty, notP256)
	case j.Crv != "P-256":
		return nil, "", fmt.Errorf("indigoclient: client key: JWK crv %q; %s", j.Crv, notP256)
	case j.Alg != "" && j.Alg != "ES256":
		return nil, "", fmt.Errorf("indigoclient: client key: JWK alg %q; client assertions are ES256", j.Alg)
	case j.D == "":
		return nil, "", errors.New("indigoclient: client key: a public JWK (no \"d\"); give the private key")
	}
	d, err := jwkNumber(j.D)
	if err != nil || len(d) > 32 {
		return nil, "", errors.New("indigoclient: client key: JWK \"d\" is not a base64url P-256 scalar")
	}
	// Some writers drop leading zero bytes; the scalar is 32 bytes.
	d = append(make([]byte, 32-len(d)), d...)
	key, err := atcrypto.ParsePrivateBytesP256(d)
	if err != nil {
		return nil, "", errors.New("indigoclient: client key: JWK \"d\" is not a valid P-256 private key")
	}
	if j.X != "" || j.Y != "" {
		if err := checkJWKPublic(key, j.X, j.Y); err != nil {
			return nil, "", err
		}
	}
	return key, j.Kid, nil
}

// checkJWKPublic checks that a JWK's x and y are d's public point, so that
// a key pasted together from two JWKs is refused rather than published
// under the wrong public half.
func checkJWKPublic(key *atcrypto.PrivateKeyP256, x, y string) error {
	xb, xerr := jwkNumber(x)
	yb, yerr := jwkNumber(y)
	if xerr != nil || yerr != nil || len(xb) > 32 || len(yb) > 32 {
		return errors.New("indigoclient: client key: JWK \"x\" or \"y\" is not a base64url coordinate")
	}
	pub, err := key.PublicKey()
	if err != nil {
		return err
	}
	raw := pub.UncompressedBytes() // 0x04 || X || Y
	if new(big.Int).SetBytes(xb).Cmp(new(big.Int).SetBytes(raw[1:33])) != 0 ||
		new(big.Int).SetBytes(yb).Cmp(new(big.Int).SetBytes(raw[33:65])) != 0 {
		return errors.New("indigoclient: client key: JWK \"x\"/\"y\" do not belong to its \"d\"")
	}
	return nil
}

// jwkNumber decodes a base64url JWK member, tolerating padding.
func jwkNumber(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
