package indigoclient_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// A public web client: client_id is the URL of the metadata document the
// Manager serves at /oauth-client-metadata.json.
func ExampleNew() {
	store := memstore.New() // use sqlitestore or postgresstore in production
	oc := oauth.NewPublicConfig(
		"https://myapp.example/oauth-client-metadata.json",
		"https://myapp.example/oauth/callback",
		[]string{"atproto", "transition:generic"},
	)
	client := indigoclient.New(oc, store, indigoclient.Options{})
	_, err := ginoauth.New(ginoauth.Config{
		OAuthClient: client, Storage: store,
		CookieSecret: os.Getenv("COOKIE_SECRET"), BaseURL: "https://myapp.example",
	})
	_ = err
}

// Local development against the real network: a loopback client needs no
// metadata document; its redirect URI must use 127.0.0.1, not localhost.
func ExampleNew_localhost() {
	oc := oauth.NewLocalhostConfig("http://127.0.0.1:8080/oauth/callback", []string{"atproto", "transition:generic"})
	_ = indigoclient.New(oc, memstore.New(), indigoclient.Options{})
}

// A confidential client signs its token requests with a P-256 key whose
// public half the metadata document publishes; the authorization server then
// grants long-lived sessions (two years on the reference PDS, against two
// weeks for public clients).
func ExampleNew_confidential() {
	key, err := atcrypto.ParsePrivateMultibase(os.Getenv("CLIENT_SECRET_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	oc := oauth.NewPublicConfig(
		"https://myapp.example/oauth-client-metadata.json",
		"https://myapp.example/oauth/callback",
		[]string{"atproto", "transition:generic"},
	)
	if err := oc.SetClientSecret(key, "key-1"); err != nil {
		log.Fatal(err)
	}
	name := "My App"
	_ = indigoclient.New(oc, memstore.New(), indigoclient.Options{
		Metadata: func(m *oauth.ClientMetadata) { m.ClientName = &name },
	})
}

// Loading a confidential client's keys from the forms people have them in:
// goat key generate's output (or just its multibase secret key), a PEM file
// from openssl, or a private JWK (whose kid names the key if none is given).
func ExampleParseClientKey() {
	// In production: os.ReadFile("/run/secrets/client-key-2026-12"), an
	// environment variable, a secret manager. Here: a key made on the spot.
	k, _ := atcrypto.GeneratePrivateKeyP256()
	goatOutput := "Key Type: P-256 / secp256r1 / ES256 private key\n" +
		"Secret Key (Multibase Syntax): save this securely (eg, add to password manager)\n\t" + k.Multibase() + "\n"

	key, err := indigoclient.ParseClientKey("2026-12", []byte(goatOutput), indigoclient.KeyCurrent)
	if err != nil {
		log.Fatal(err) // a clear reason: "a K-256 (secp256k1) key; ...", "an encrypted PEM key; ..."
	}
	fmt.Println(key.ID, key.State)

	_, err = indigoclient.ParsePrivateKey([]byte(`{"kty":"EC","crv":"secp256k1","d":"AA"}`))
	fmt.Println(err != nil)
	// Output:
	// 2026-12 current
	// true
}

// Rotating the client key (see the README, "Rotating the client key"):
// each step is a configuration every instance is redeployed with, one
// instance at a time. The JWKS publishes the current and next keys, the
// previous ones a live session still uses, never a retired one.
func ExampleNewKeySet() {
	oldKey, _ := atcrypto.GeneratePrivateKeyP256() // in production: ParsePrivateKey of your secrets
	newKey, _ := atcrypto.GeneratePrivateKeyP256()
	config := oauth.NewPublicConfig("https://myapp.example/oauth-client-metadata.json", "https://myapp.example/oauth/callback", []string{"atproto"})
	store := memstore.New()
	steps := []struct {
		name string
		keys []indigoclient.ClientKey
	}{
		{"before", []indigoclient.ClientKey{{ID: "2026-06", Key: oldKey, State: indigoclient.KeyCurrent}}},
		{"1 announce", []indigoclient.ClientKey{{ID: "2026-06", Key: oldKey, State: indigoclient.KeyCurrent}, {ID: "2026-12", Key: newKey, State: indigoclient.KeyNext}}},
		{"2 switch", []indigoclient.ClientKey{{ID: "2026-12", Key: newKey, State: indigoclient.KeyCurrent}, {ID: "2026-06", Key: oldKey, State: indigoclient.KeyPrevious}}},
		{"3 retire", []indigoclient.ClientKey{{ID: "2026-12", Key: newKey, State: indigoclient.KeyCurrent}, {ID: "2026-06", Key: oldKey, State: indigoclient.KeyRetired}}},
	}
	for _, step := range steps {
		keys, err := indigoclient.NewKeySet(step.keys...)
		if err != nil {
			log.Fatal(err)
		}
		client := indigoclient.New(config, store, indigoclient.Options{Keys: keys})
		usage, err := client.KeyUsage(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(step.name, ":")
		for _, u := range usage {
			fmt.Printf(" %s %s sessions=%d published=%v;", u.ID, u.State, u.Sessions, u.Published)
		}
		fmt.Println()
		_ = client.Close()
	}
	// Output:
	// before: 2026-06 current sessions=0 published=true;
	// 1 announce: 2026-06 current sessions=0 published=true; 2026-12 next sessions=0 published=true;
	// 2 switch: 2026-12 current sessions=0 published=true; 2026-06 previous sessions=0 published=false;
	// 3 retire: 2026-12 current sessions=0 published=true; 2026-06 retired sessions=0 published=false;
}
