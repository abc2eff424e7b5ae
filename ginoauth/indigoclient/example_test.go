package indigoclient_test

import (
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
