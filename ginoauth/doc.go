// Package ginoauth adds AT Protocol (Bluesky) OAuth login, and the sessions
// that keep users logged in, to Gin applications.
//
// A Manager runs the authorization-code flow (PAR, PKCE and DPoP, through a
// bring-your-own [OAuthClient]; ginoauth/indigoclient adapts indigo's client),
// keeps flow data and one session record per device in a bring-your-own
// [Storage] (see the stores packages for SQLite, Postgres and memory), and
// identifies browsers with an encrypted cookie that holds only a random
// session id.
//
//	r := gin.Default()
//	r.Use(mgr.Middleware())
//	mgr.Mount(r)
//	r.GET("/me", mgr.RequireAuth(), func(c *gin.Context) {
//		user, _ := ginoauth.CurrentUser(c)
//		c.JSON(200, gin.H{"did": user.DID})
//	})
package ginoauth
