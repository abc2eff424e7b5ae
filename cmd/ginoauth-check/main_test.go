package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
)

// The check passes a document indigo builds for the URL it is served at,
// and fails one whose client_id names another host or whose redirect URI
// answers 404.
func TestRun(t *testing.T) {
	var doc []byte
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/oauth-client-metadata.json":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(doc)
		case "/oauth/callback":
			http.Error(w, `{"error":"missing state"}`, http.StatusBadRequest)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	id := srv.URL + "/oauth-client-metadata.json"
	build := func(clientID, callback string) []byte {
		cfg := oauth.NewPublicConfig(clientID, callback, []string{"atproto"})
		b, err := json.Marshal(cfg.ClientMetadata())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	doc = build(id, srv.URL+"/oauth/callback")
	if !run(context.Background(), srv.Client(), id, []string{"atproto"}, nil) {
		t.Fatal("a good document failed")
	}
	if run(context.Background(), srv.Client(), id, []string{"atproto", "transition:generic"}, nil) {
		t.Fatal("a missing scope passed")
	}
	doc = []byte(strings.Replace(string(build(id, srv.URL+"/oauth/callback")), id, "https://internal/oauth-client-metadata.json", 1))
	if run(context.Background(), srv.Client(), id, nil, nil) {
		t.Fatal("a wrong client_id passed")
	}
	doc = build(id, srv.URL+"/callback")
	if run(context.Background(), srv.Client(), id, nil, nil) {
		t.Fatal("a redirect URI answering 404 passed")
	}
}
