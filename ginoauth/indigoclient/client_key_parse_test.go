package indigoclient_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/bluesky-social/indigo/atproto/atcrypto"

	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
)

// keyForms writes one P-256 key in every form ParsePrivateKey reads.
func keyForms(t testing.TB, k *atcrypto.PrivateKeyP256) map[string]string {
	t.Helper()
	ec, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), k.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := k.PublicKey()
	raw := pub.UncompressedBytes()
	b64 := base64.RawURLEncoding.EncodeToString
	jwk := func(extra map[string]any) string {
		m := map[string]any{"kty": "EC", "crv": "P-256", "d": b64(k.Bytes()), "x": b64(raw[1:33]), "y": b64(raw[33:65])}
		for k, v := range extra {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		out, _ := json.MarshalIndent(m, "", "  ")
		return string(out)
	}
	return map[string]string{
		"multibase":            k.Multibase(),
		"multibase, newline":   k.Multibase() + "\r\n",
		"goat key generate":    "Key Type: P-256 / secp256r1 / ES256 private key\nSecret Key (Multibase Syntax): save this securely (eg, add to password manager)\n\t" + k.Multibase() + "\nPublic Key (DID Key Syntax): share or publish this (eg, in DID document)\n\t" + pub.DIDKey() + "\n",
		"JWK (goat -o jwk)":    jwk(nil),
		"JWK with kid and alg": jwk(map[string]any{"kid": "2026-12", "alg": "ES256", "use": "sig"}),
		"JWK without x and y":  jwk(map[string]any{"x": nil, "y": nil}),
		"JWK, padded base64":   jwk(map[string]any{"d": base64.URLEncoding.EncodeToString(k.Bytes())}),
		"PEM PKCS#8":           string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})),
		"PEM SEC1":             "\n" + string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})),
	}
}

// Every form of one key loads as that same key.
func TestParsePrivateKeyFormats(t *testing.T) {
	k, err := atcrypto.GeneratePrivateKeyP256()
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range keyForms(t, k) {
		t.Run(name, func(t *testing.T) {
			got, err := indigoclient.ParsePrivateKey([]byte(text))
			if err != nil {
				t.Fatalf("ParsePrivateKey: %v", err)
			}
			if !got.Equal(k) {
				t.Fatal("loaded another key than the one written")
			}
		})
	}
}

// A JWK's kid names the key unless the caller names it.
func TestParseClientKeyTakesTheJWKKid(t *testing.T) {
	k, _ := atcrypto.GeneratePrivateKeyP256()
	forms := keyForms(t, k)
	ck, err := indigoclient.ParseClientKey("", []byte(forms["JWK with kid and alg"]), indigoclient.KeyCurrent)
	if err != nil || ck.ID != "2026-12" || ck.State != indigoclient.KeyCurrent || !ck.Key.(*atcrypto.PrivateKeyP256).Equal(k) {
		t.Fatalf("ParseClientKey: %+v %v", ck, err)
	}
	if _, err := indigoclient.ParseClientKey("2027-01", []byte(forms["JWK with kid and alg"]), indigoclient.KeyCurrent); err == nil || !strings.Contains(err.Error(), "kid") {
		t.Fatalf("a kid that differs from the JWK's: %v", err)
	}
	if _, err := indigoclient.ParseClientKey("", []byte(forms["multibase"]), indigoclient.KeyCurrent); err == nil || !strings.Contains(err.Error(), "ID") {
		t.Fatalf("no kid anywhere: %v", err)
	}
	if ck, err := indigoclient.ParseClientKey("2026-06", []byte(forms["PEM SEC1"]), indigoclient.KeyPrevious); err != nil || ck.ID != "2026-06" {
		t.Fatalf("PEM with a kid: %+v %v", ck, err)
	}
}

// Malformed and unusable keys give an error that says what is wrong, never a
// panic and never the key text.
func TestParsePrivateKeyRefuses(t *testing.T) {
	k, _ := atcrypto.GeneratePrivateKeyP256()
	other, _ := atcrypto.GeneratePrivateKeyP256()
	k256, _ := atcrypto.GeneratePrivateKeyK256()
	pub, _ := k.PublicKey()
	rawPub := pub.UncompressedBytes()
	otherPub, _ := other.PublicKey()
	otherRaw := otherPub.UncompressedBytes()
	b64 := base64.RawURLEncoding.EncodeToString
	d := b64(k.Bytes())
	pemOf := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	p384SEC1, _ := x509.MarshalECPrivateKey(p384)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	ec, _ := ecdsa.ParseRawPrivateKey(elliptic.P256(), k.Bytes())
	pubDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	good := pemOf("PRIVATE KEY", pkcs8)

	cases := []struct{ name, text, want string }{
		{"empty", "", "empty"},
		{"blank", " \n\t ", "empty"},
		{"garbage", "hello world", "not a JWK, PEM or multibase"},
		{"K-256 multibase", k256.Multibase(), "K-256"},
		{"public multibase", pub.Multibase(), "public key"},
		{"did:key", pub.DIDKey(), "public key"},
		{"multibase, bad characters", "z0OIl" + strings.Repeat("1", 40), "not a multibase private key"},
		{"multibase, too short", "z1", "not a multibase private key"},
		{"multibase, two words", k.Multibase() + " " + k.Multibase(), "one word"},
		{"goat output without the key", "Secret Key (Multibase Syntax): save this securely\n\n", "goat output"},
		{"JSON, not an object", `["a"]`, "not a JWK, PEM or multibase"},
		{"JWK, broken JSON", `{"kty":"EC",`, "not valid JSON"},
		{"JWK set", `{"keys":[{"kty":"EC"}]}`, "JWK set"},
		{"JWK, RSA", `{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}`, "P-256"},
		{"JWK, K-256", `{"kty":"EC","crv":"secp256k1","d":"` + b64(k256.Bytes()) + `"}`, "P-256"},
		{"JWK, P-384", `{"kty":"EC","crv":"P-384","d":"` + d + `"}`, "P-256"},
		{"JWK, ES384", `{"kty":"EC","crv":"P-256","alg":"ES384","d":"` + d + `"}`, "ES256"},
		{"JWK, public", `{"kty":"EC","crv":"P-256","x":"` + b64(rawPub[1:33]) + `","y":"` + b64(rawPub[33:65]) + `"}`, "public JWK"},
		{"JWK, d not base64", `{"kty":"EC","crv":"P-256","d":"!!!"}`, `"d"`},
		{"JWK, d too long", `{"kty":"EC","crv":"P-256","d":"` + b64(make([]byte, 33)) + `"}`, `"d"`},
		{"JWK, d zero", `{"kty":"EC","crv":"P-256","d":"` + b64(make([]byte, 32)) + `"}`, "not a valid P-256"},
		{"JWK, d above the order", `{"kty":"EC","crv":"P-256","d":"` + b64([]byte(strings.Repeat("\xff", 32))) + `"}`, "not a valid P-256"},
		{"JWK, x and y of another key", `{"kty":"EC","crv":"P-256","d":"` + d + `","x":"` + b64(otherRaw[1:33]) + `","y":"` + b64(otherRaw[33:65]) + `"}`, "do not belong"},
		{"JWK, x not base64", `{"kty":"EC","crv":"P-256","d":"` + d + `","x":"%%","y":"AA"}`, `"x"`},
		{"PEM, truncated", good[:len(good)/2], "malformed PEM"},
		{"PEM, corrupt body", strings.Replace(good, good[40:60], strings.Repeat("A", 20), 1), "unreadable PEM"},
		{"PEM, two blocks", good + good, "more than one PEM block"},
		{"PEM, encrypted", pemOf("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), "encrypted"},
		{"PEM, public key", pemOf("PUBLIC KEY", pubDER), "not a private key"},
		{"PEM, certificate", pemOf("CERTIFICATE", []byte{1}), "not a private key"},
		{"PEM, unknown block", pemOf("OPENSSH PRIVATE KEY", []byte{1}), "not a private key"},
		{"PEM, EC parameters", pemOf("EC PARAMETERS", []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}), "parameters"},
		{"PEM, P-384 PKCS#8", pemOf("PRIVATE KEY", p384DER), "P-384"},
		{"PEM, P-384 SEC1", pemOf("EC PRIVATE KEY", p384SEC1), "P-384"},
		{"PEM, RSA", pemOf("PRIVATE KEY", rsaDER), "RSA"},
		{"PEM, Ed25519", pemOf("PRIVATE KEY", edDER), "Ed25519"},
		{"too long", strings.Repeat("z", 20<<10), "too long"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key, err := indigoclient.ParsePrivateKey([]byte(c.text))
			if err == nil || key != nil {
				t.Fatalf("accepted: %v", key)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
			for _, secret := range []string{d, k.Multibase(), b64(k256.Bytes())} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q contains the private key", err)
				}
			}
		})
	}
}

// The loader never panics, and what it accepts is a usable P-256 key.
func FuzzParsePrivateKey(f *testing.F) {
	k, _ := atcrypto.GeneratePrivateKeyP256()
	for _, text := range keyForms(f, k) {
		f.Add([]byte(text))
		f.Add([]byte(text[:len(text)/2]))
	}
	k256, _ := atcrypto.GeneratePrivateKeyK256()
	for _, s := range []string{"", "z", "{}", `{"kty":"EC","crv":"P-256","d":""}`, "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n", k256.Multibase(), "Secret Key (Multibase Syntax)\n\tz"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		key, err := indigoclient.ParsePrivateKey(text)
		if (key == nil) == (err == nil) {
			t.Fatalf("key %v and error %v", key, err)
		}
		if key == nil {
			return
		}
		again, err := indigoclient.ParsePrivateKey([]byte(key.Multibase()))
		if err != nil || !again.Equal(key) {
			t.Fatalf("an accepted key does not round-trip: %v", err)
		}
		if _, err := indigoclient.NewKeySet(indigoclient.ClientKey{ID: "k", Key: key, State: indigoclient.KeyCurrent}); err != nil {
			t.Fatalf("an accepted key is not usable: %v", err)
		}
	})
}
