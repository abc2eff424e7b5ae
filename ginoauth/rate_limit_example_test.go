package ginoauth_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// Login rate limits per client address. The address is Gin's
// c.ClientIP(), so the engine must know its proxies: none here (clients
// connect directly); behind a load balancer, its addresses. Past the limit
// the answer is 429 with Retry-After. Every start counts, a mistyped
// handle (400, as here) included.
func ExampleRateLimits() {
	store := memstore.New()
	oc := oauth.NewPublicConfig("https://myapp.example/oauth-client-metadata.json", "https://myapp.example/oauth/callback", []string{"atproto"})
	mgr, err := ginoauth.New(ginoauth.Config{
		OAuthClient:  indigoclient.New(oc, store, indigoclient.Options{}),
		Storage:      store, // has storage.Counter: instances on one store share the counts
		CookieSecret: "example-secret-example-secret-example",
		BaseURL:      "https://myapp.example",
		RateLimits:   ginoauth.RateLimits{LoginStarts: 2, Callbacks: 10, Window: time.Minute},
		// RateLimits: ginoauth.RateLimits{Disabled: true}, // a load test from one machine
	})
	if err != nil {
		log.Fatal(err)
	}
	defer mgr.Close()

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	if err := r.SetTrustedProxies(nil); err != nil { // behind a proxy: []string{"10.0.0.0/8"}
		log.Fatal(err)
	}
	mgr.Mount(r)

	for range 3 {
		req := httptest.NewRequest(http.MethodGet, "/login?handle=not+a+handle", nil)
		req.RemoteAddr = "203.0.113.7:51000"
		req.Header.Set("X-Forwarded-For", "198.51.100.1") // not a trusted proxy's: ignored
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		fmt.Println(w.Code, w.Header().Get("Retry-After") != "")
	}
	// Output:
	// 400 false
	// 400 false
	// 429 true
}
