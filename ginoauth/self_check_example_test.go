package ginoauth_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// Once the app listens, SelfCheck does what an authorization server and a
// browser will do with the deployment and lists what disagrees with the
// Config. Run it at start-up (log its report; exit on its Err in a
// deployment script). Here, a loopback development app, whose metadata no
// server fetches.
func ExampleManager_SelfCheck() {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // listen first: the client needs the URL
	if err != nil {
		log.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	store := memstore.New()
	client := indigoclient.New(indigoclient.LocalhostConfig(base+"/oauth/callback", []string{"atproto"}), store, indigoclient.Options{})
	defer client.Close()
	mgr, err := ginoauth.New(ginoauth.Config{
		OAuthClient: client, Storage: store, BaseURL: base,
		CookieSecret: "an-example-cookie-secret-of-32-bytes!!",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer mgr.Close()
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(ginoauth.Middleware(mgr))
	mgr.Mount(r)
	srv := &http.Server{Handler: r}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	report := mgr.SelfCheck(context.Background(), nil)
	if err := report.Err(); err != nil {
		log.Fatal(err) // each problem: what was checked, expected, found, and the fix
	}
	fmt.Println(len(report.Checked), "checks passed")
	for _, s := range report.Skipped {
		fmt.Println("skipped:", s)
	}
	// Output:
	// 4 checks passed
	// skipped: client address: no X-Forwarded-For reached the app (no proxy in front, or one that does not set it)
	// skipped: client metadata and JWKS: no authorization server fetches a loopback development client's metadata (client id http://localhost...); checked the client id's redirect_uri and scope instead
}
