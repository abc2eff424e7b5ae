// Command ginoauth-check checks a deployed AT Protocol OAuth client from
// the outside, the way an authorization server will: the client metadata
// document at its client_id URL (200 without a redirect, application/json,
// client_id equal to the URL, https redirect URIs on its origin,
// dpop_bound_access_tokens, the atproto scope, for a confidential client
// a JWKS whose keys have kids and no private members) and that each
// redirect URI answers (not 404). For a deployment script, after the app
// is up:
//
//	go run github.com/gin-atproto/oauth-sessions/cmd/ginoauth-check https://myapp.example/oauth-client-metadata.json
//
// It exits 1 when it found a problem, 2 on bad usage. Inside the app,
// Manager.SelfCheck does the same and also compares the document with the
// Config and the OAuth client, and checks the proxy's forwarded headers.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gin-atproto/oauth-sessions/internal/clientcheck"
)

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: ginoauth-check [-scope 'atproto ...'] [-kid k1] CLIENT_ID_URL")
		flag.PrintDefaults()
	}
	scope := flag.String("scope", "", "scopes the document must declare, space-separated")
	kid := flag.String("kid", "", "key ids a confidential client's JWKS must publish, comma-separated")
	timeout := flag.Duration("timeout", 10*time.Second, "per request")
	flag.Parse()
	if flag.NArg() != 1 || !strings.HasPrefix(flag.Arg(0), "https://") {
		flag.Usage()
		os.Exit(2)
	}
	ok := run(context.Background(), &http.Client{Timeout: *timeout}, flag.Arg(0), strings.Fields(*scope), splitComma(*kid))
	if !ok {
		os.Exit(1)
	}
}

func splitComma(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// run checks clientID and prints the report; it reports whether no
// problem was found.
func run(ctx context.Context, client *http.Client, clientID string, scopes, kids []string) bool {
	res := clientcheck.Metadata(ctx, client, clientcheck.Expect{ClientID: clientID, Scopes: scopes, Confidential: len(kids) > 0, KeyIDs: kids})
	if !res.Unreachable {
		for _, ru := range res.RedirectURIs {
			status, _, _, _, err := clientcheck.Fetch(ctx, client, ru)
			switch {
			case err != nil:
				res.Problems = append(res.Problems, clientcheck.Unreachable(ru, err))
			case status == http.StatusNotFound:
				res.Problems = append(res.Problems, clientcheck.Problem{Check: "redirect URI " + ru, Expected: "the app's callback", Found: "404", Fix: "mount the callback at the redirect URI's path"})
			default:
				res.Checked = append(res.Checked, fmt.Sprintf("redirect URI %s answers (%d without a login's parameters)", ru, status))
			}
		}
	}
	for _, s := range res.Checked {
		fmt.Println("ok       " + s)
	}
	for _, s := range res.Skipped {
		fmt.Println("skipped  " + s)
	}
	for _, p := range res.Problems {
		line := "PROBLEM  " + p.Check + ": expected " + p.Expected + ", found " + p.Found
		if p.Fix != "" {
			line += " (" + p.Fix + ")"
		}
		fmt.Println(line)
	}
	return len(res.Problems) == 0
}
