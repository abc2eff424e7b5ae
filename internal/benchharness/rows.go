package main

import (
	"fmt"
	"path"
	"strings"
)

// Kinds of rows.
const (
	kindBare     = "bare"     // Gin, no middleware
	kindGSess    = "gsess"    // gin-contrib/sessions cookie store (+ a GORM read)
	kindGinoauth = "ginoauth" // ginoauth.Middleware(mgr) on a store
	kindNode     = "node"     // the Deno library's stack on Node 22
)

// Stores of the ginoauth rows, and databases of the gin-sessions rows.
const (
	storeMem      = "memstore"
	storeSQLite   = "sqlitestore"
	storePostgres = "postgresstore"
	storeRedis    = "redisstore"
	dbSQLite      = "sqlite"
	dbPostgres    = "postgres"
)

// rowSpec is one server configuration under load.
type rowSpec struct {
	Name      string
	Kind      string
	Store     string // ginoauth: a store*; gsess: "", dbSQLite or dbPostgres
	Idle      bool   // ginoauth: IdleTimeout 30m
	OldCookie bool   // ginoauth with Idle: the client resends a cookie sealed before the reseal interval (it ignores Set-Cookie)
	Cache     bool   // ginoauth: SessionCacheTTL 5s
	Bearer    bool   // ginoauth: a native app's session token (Authorization: Bearer) instead of the browser's cookie
	Accounts  int    // ginoauth: accounts logged in in the client's browser (0: one); the last one added is active
	Path      string // the measured route
	Default   bool   // part of the default selection
	What      string // one line for the report
}

// needsPostgres and friends say which outside service a row needs.
func (r rowSpec) needsPostgres() bool {
	return r.Store == storePostgres || r.Store == dbPostgres
}
func (r rowSpec) needsRedis() bool { return r.Store == storeRedis }
func (r rowSpec) needsNode() bool  { return r.Kind == kindNode }

const bareRow = "bare-gin"

// allRows lists every row the harness knows, in report order.
func allRows() []rowSpec {
	rows := []rowSpec{
		{Name: bareRow, Kind: kindBare, Path: "/me", Default: true, What: "Gin, no middleware, the handler answering the same JSON as every row"},
		{Name: "gin-sessions", Kind: kindGSess, Path: "/me", Default: true, What: "gin-contrib/sessions cookie store (signed cookie, README default), session id read from it"},
		{Name: "gin-sessions+gorm-sqlite", Kind: kindGSess, Store: dbSQLite, Path: "/me", Default: true, What: "the same plus a GORM primary-key read (First) of the session's row, SQLite"},
		{Name: "gin-sessions+gorm-postgres", Kind: kindGSess, Store: dbPostgres, Path: "/me", Default: true, What: "the same plus a GORM primary-key read (First) of the session's row, Postgres"},
	}
	for _, st := range []string{storeMem, storeSQLite, storePostgres, storeRedis} {
		for _, v := range []struct {
			suffix                         string
			idle, oldCookie, cache, bearer bool
			accounts                       int
			def                            bool
		}{
			{suffix: "", def: true},
			{suffix: "+idle", idle: true, def: true},
			{suffix: "+idle+old-cookie", idle: true, oldCookie: true, def: true},
			{suffix: "+cache", cache: true, def: true},
			{suffix: "+idle+cache", idle: true, cache: true},
			{suffix: "+bearer", bearer: true, def: true},
			{suffix: "+5-accounts", accounts: 5, def: true},
		} {
			what := "ginoauth.Middleware on stores/" + st
			if v.idle {
				what += ", IdleTimeout 30m"
			}
			if v.oldCookie {
				what += ", the client resends a cookie older than the reseal interval (2 min) and ignores Set-Cookie"
			}
			if v.cache {
				what += ", SessionCacheTTL 5s"
			}
			if v.bearer {
				what += ", a native app's session token (Authorization: Bearer) instead of the cookie"
			}
			if v.accounts > 1 {
				what += fmt.Sprintf(", %d accounts logged in in the browser (one cookie; the check reads the active one)", v.accounts)
			}
			rows = append(rows, rowSpec{Name: "ginoauth/" + st + v.suffix, Kind: kindGinoauth, Store: st, Idle: v.idle, OldCookie: v.oldCookie,
				Cache: v.cache, Bearer: v.bearer, Accounts: v.accounts, Path: "/me", Default: v.def, What: what})
		}
	}
	rows = append(rows,
		rowSpec{Name: "deno-stack", Kind: kindNode, Path: "/me", Default: true, What: "Node 22, Hono + iron-session: unseal the session cookie, read the session id (no storage)"},
		rowSpec{Name: "deno-stack+reseal", Kind: kindNode, Path: "/me-reseal", Default: true, What: "the same plus the library's per-request lastAccessed update and session.save() (re-seal, Set-Cookie)"},
	)
	return rows
}

func rowByName(name string) (rowSpec, bool) {
	for _, r := range allRows() {
		if r.Name == name {
			return r, true
		}
	}
	return rowSpec{}, false
}

// selectRows resolves -rows: "default", "all", or a comma-separated list of
// names and path.Match patterns ("ginoauth/*"). bare-gin is always included:
// every ratio is against it.
func selectRows(spec string) ([]rowSpec, error) {
	var pats []string
	for _, p := range strings.Split(spec, ",") {
		if p = strings.TrimSpace(p); p != "" {
			pats = append(pats, p)
		}
	}
	var out []rowSpec
	for _, r := range allRows() {
		keep := r.Name == bareRow
		for _, p := range pats {
			switch p {
			case "default":
				keep = keep || r.Default
			case "all":
				keep = true
			default:
				if ok, err := path.Match(p, r.Name); err != nil {
					return nil, fmt.Errorf("-rows: bad pattern %q: %v", p, err)
				} else if ok {
					keep = true
				}
			}
		}
		if keep {
			out = append(out, r)
		}
	}
	for _, p := range pats {
		if p == "default" || p == "all" {
			continue
		}
		found := false
		for _, r := range out {
			if ok, _ := path.Match(p, r.Name); ok {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("-rows: %q matches no row (see -list)", p)
		}
	}
	return out, nil
}
