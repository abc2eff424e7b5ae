package indigoclient_test

import (
	"reflect"
	"testing"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"

	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// The registration is what the authorization server sees: the client id,
// the callback logins come back to, the scopes, and for a confidential
// client the current key's id (not a next one's).
func TestRegistration(t *testing.T) {
	scopes := []string{"atproto", "transition:generic"}
	public := oauth.NewPublicConfig("https://app.example/oauth-client-metadata.json", "https://app.example/oauth/callback", scopes)
	loopback := indigoclient.LocalhostConfig("http://127.0.0.1:8080/oauth/callback", scopes)
	ks := keySet(t, indigoclient.ClientKey{ID: "2026-12", Key: p256(t), State: indigoclient.KeyCurrent},
		indigoclient.ClientKey{ID: "2027-01", Key: p256(t), State: indigoclient.KeyNext})
	for _, tc := range []struct {
		name   string
		config oauth.ClientConfig
		opts   indigoclient.Options
		want   oauthclient.Registration
	}{
		{"public", public, indigoclient.Options{}, oauthclient.Registration{ClientID: public.ClientID, RedirectURIs: []string{"https://app.example/oauth/callback"}, Scopes: scopes}},
		{"loopback", loopback, indigoclient.Options{}, oauthclient.Registration{ClientID: loopback.ClientID, RedirectURIs: []string{"http://127.0.0.1:8080/oauth/callback"}, Scopes: scopes}},
		{"confidential", public, indigoclient.Options{Keys: ks}, oauthclient.Registration{ClientID: public.ClientID, RedirectURIs: []string{"https://app.example/oauth/callback"}, Scopes: scopes, Confidential: true, KeyIDs: []string{"2026-12"}}},
	} {
		c := indigoclient.New(tc.config, memstore.New(), tc.opts)
		if got := c.Registration(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v\nwant %+v", tc.name, got, tc.want)
		}
		_ = c.Close()
	}
}
