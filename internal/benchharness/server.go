package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gin-contrib/sessions"
	"github.com/gin-contrib/sessions/cookie"
	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
	"github.com/gin-atproto/oauth-sessions/stores/postgresstore"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

// serverConfig is what the harness passes a server process.
type serverConfig struct {
	row        rowSpec
	asURL      string // the authorization server (ginoauth rows)
	accounts   int    // accounts the directory knows
	secret     string
	sqlitePath string
	pgDSN      string
	redisAddr  string
	prefix     string // tables: prefix+"_kv" (or -table), prefix+"_users"; Redis keys: prefix+":"
	table      string // ginoauth SQL stores: the kv table (default prefix+"_kv")
}

// benchDID is the DID every row's measured route answers (the anchors
// answer it for the session they read).
var benchDID = accountDID(0).String()

// didAnswer is the measured route's body in every row, bare Gin included:
// {"did": "..."}, written by Gin's JSON renderer, so that the ratios compare
// the session checks and not the answers.
type didAnswer struct {
	DID string `json:"did"`
}

// answerDID writes the measured route's answer.
func answerDID(c *gin.Context, did string) { c.JSON(http.StatusOK, didAnswer{DID: did}) }

// serveMain runs one server for a row: the app on one loopback listener,
// and a control API (allocations, heap, bulk fill, purge) on another, so
// that the measured routes carry nothing extra. It prints
// "READY <app URL> <control URL>" once both listen, and stops on SIGTERM.
func serveMain(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	var cfg serverConfig
	name := fs.String("row", "", "row name")
	fs.StringVar(&cfg.asURL, "as-url", "", "authorization server URL")
	fs.IntVar(&cfg.accounts, "accounts", 1, "accounts the directory knows")
	fs.StringVar(&cfg.secret, "secret", "", "cookie secret")
	fs.StringVar(&cfg.sqlitePath, "sqlite", "", "SQLite database file")
	fs.StringVar(&cfg.pgDSN, "pg-dsn", "", "Postgres DSN")
	fs.StringVar(&cfg.redisAddr, "redis-addr", "", "Redis address")
	fs.StringVar(&cfg.prefix, "prefix", "", "table and key prefix of this run")
	fs.StringVar(&cfg.table, "table", "", "kv table of the ginoauth SQL stores")
	_ = fs.Parse(args)
	log.SetFlags(0)
	log.SetPrefix("benchharness serve " + *name + ": ")
	row, ok := rowByName(*name)
	if !ok || row.Kind == kindNode {
		log.Fatalf("unknown Go row %q", *name)
	}
	cfg.row = row
	if cfg.table == "" {
		cfg.table = cfg.prefix + "_kv"
	}
	gin.SetMode(gin.ReleaseMode)

	var lc net.ListenConfig
	appLn, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ctlLn, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	appURL := "http://" + appLn.Addr().String()
	app, err := buildApp(cfg, appURL)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: app.engine, ReadHeaderTimeout: 10 * time.Second}
	ctl := &http.Server{Handler: app.control(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(appLn) }()
	go func() { _ = ctl.Serve(ctlLn) }()
	fmt.Printf("READY %s http://%s\n", appURL, ctlLn.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = ctl.Shutdown(ctx)
	app.close()
}

// app is a built server: its Gin engine, and what the control API needs.
type app struct {
	cfg    serverConfig
	engine *gin.Engine
	kv     *gormstore.Store // ginoauth SQL rows
	ahead  atomic.Int64     // ginoauth rows: how far the Manager's clock runs ahead, in ns (POST /advance)
	closer []func()
}

func (a *app) close() {
	for i := len(a.closer) - 1; i >= 0; i-- {
		a.closer[i]()
	}
}

func buildApp(cfg serverConfig, appURL string) (*app, error) {
	a := &app{cfg: cfg, engine: gin.New()}
	r := a.engine
	switch cfg.row.Kind {
	case kindBare:
		r.GET("/me", func(c *gin.Context) { answerDID(c, benchDID) })
	case kindGSess:
		if err := a.buildGSess(); err != nil {
			return nil, err
		}
	case kindGinoauth:
		if err := a.buildGinoauth(appURL); err != nil {
			a.close()
			return nil, err
		}
	default:
		return nil, fmt.Errorf("row kind %q has no Go server", cfg.row.Kind)
	}
	return a, nil
}

// benchUser is the row the GORM anchor reads per request, about the size of
// a ginoauth session record.
type benchUser struct {
	ID        string `gorm:"primaryKey"`
	DID       string
	Handle    string
	Scopes    string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// buildGSess is a typical gin-contrib/sessions app: the README's cookie
// store, a session id in the session, and (with a database) the user's row
// read by primary key through GORM on every request. The database pools are
// set like the library's stores (SQLite: one connection, WAL; Postgres: 10).
func (a *app) buildGSess() error {
	cfg := a.cfg
	var db *gorm.DB
	users := cfg.prefix + "_users"
	switch cfg.row.Store {
	case "":
	case dbSQLite, dbPostgres:
		var dial gorm.Dialector
		maxConns := postgresstore.MaxOpenConns
		if cfg.row.Store == dbSQLite {
			dial, maxConns = sqlite.Open(sqlitestore.DSN(cfg.sqlitePath)), 1
		} else {
			dial = postgres.Open(cfg.pgDSN)
		}
		var err error
		db, err = gorm.Open(dial, &gorm.Config{Logger: logger.Discard})
		if err != nil {
			return err
		}
		sqlDB, err := db.DB()
		if err != nil {
			return err
		}
		sqlDB.SetMaxOpenConns(maxConns)
		sqlDB.SetMaxIdleConns(maxConns)
		a.closer = append(a.closer, func() { _ = sqlDB.Close() })
		if err := db.Table(users).AutoMigrate(&benchUser{}); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown database %q", cfg.row.Store)
	}
	r := a.engine
	r.Use(sessions.Sessions("gsid", cookie.NewStore([]byte(cfg.secret))))
	r.GET("/bench/login", func(c *gin.Context) {
		sid := randomID()
		if db != nil {
			u := benchUser{ID: sid, DID: benchDID, Handle: accountHandle(0), Scopes: "atproto transition:generic",
				CreatedAt: time.Now(), ExpiresAt: time.Now().Add(7 * 24 * time.Hour)}
			if err := db.Table(users).Create(&u).Error; err != nil {
				c.String(http.StatusInternalServerError, err.Error())
				return
			}
		}
		s := sessions.Default(c)
		s.Set("sid", sid)
		if err := s.Save(); err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.String(http.StatusOK, "ok")
	})
	r.GET("/me", func(c *gin.Context) {
		sid, _ := sessions.Default(c).Get("sid").(string)
		if sid == "" {
			c.String(http.StatusUnauthorized, "anonymous")
			return
		}
		if db == nil {
			answerDID(c, benchDID)
			return
		}
		var u benchUser
		switch err := db.WithContext(c.Request.Context()).Table(users).First(&u, "id = ?", sid).Error; {
		case errors.Is(err, gorm.ErrRecordNotFound):
			c.String(http.StatusUnauthorized, "anonymous")
		case err != nil:
			c.String(http.StatusServiceUnavailable, "storage")
		case !time.Now().Before(u.ExpiresAt):
			c.String(http.StatusUnauthorized, "expired")
		default:
			answerDID(c, u.DID)
		}
	})
	return nil
}

// buildGinoauth is the library wired as its documentation says, with the
// OAuth client talking to the harness's authorization server.
func (a *app) buildGinoauth(appURL string) error {
	cfg := a.cfg
	var store storage.Store
	switch cfg.row.Store {
	case storeMem:
		store = memstore.New()
	case storeSQLite, storePostgres:
		var (
			s   *gormstore.Store
			err error
		)
		opts := sqlitestore.Options{Table: cfg.table}
		if cfg.row.Store == storeSQLite {
			s, err = sqlitestore.Open(cfg.sqlitePath, opts)
		} else {
			s, err = postgresstore.Open(cfg.pgDSN, opts)
		}
		if err != nil {
			return err
		}
		a.kv, store = s, s
		a.closer = append(a.closer, func() { _ = s.Close() })
	case storeRedis:
		rdb := redis.NewClient(&redis.Options{Addr: cfg.redisAddr, ContextTimeoutEnabled: true})
		a.closer = append(a.closer, func() { _ = rdb.Close() })
		s, err := redisstore.New(rdb, redisstore.Options{Prefix: cfg.prefix + ":"})
		if err != nil {
			return err
		}
		store = s
	default:
		return fmt.Errorf("unknown store %q", cfg.row.Store)
	}
	hc, err := newASClient(cfg.asURL)
	if err != nil {
		return err
	}
	client := indigoclient.New(indigoclient.LocalhostConfig(appURL+"/oauth/callback", []string{"atproto", "transition:generic"}), store,
		indigoclient.Options{HTTPClient: hc, Directory: benchDirectory{accounts: cfg.accounts}})
	gc := ginoauth.Config{OAuthClient: client, Storage: store, CookieSecret: cfg.secret, BaseURL: appURL, LocalDomains: []string{"test"},
		// The login throughput runs thousands of logins a second from one
		// address (127.0.0.1): it measures the login path, not the limits.
		RateLimits: ginoauth.RateLimits{Disabled: true}}
	if cfg.row.Idle {
		gc.IdleTimeout = 30 * time.Minute
	}
	if cfg.row.Cache {
		gc.SessionCacheTTL = 5 * time.Second
	}
	if cfg.row.Bearer {
		gc.Mobile.RedirectURIs = []string{nativeRedirect}
	}
	if cfg.row.OldCookie {
		gc.Now = func() time.Time { return time.Now().Add(time.Duration(a.ahead.Load())) }
	}
	mgr, err := ginoauth.New(gc)
	if err != nil {
		_ = client.Close()
		return err
	}
	a.closer = append(a.closer, func() { _ = mgr.Close(); _ = client.Close() })
	r := a.engine
	r.Use(ginoauth.Middleware(mgr))
	mgr.Mount(r)
	r.GET("/me", func(c *gin.Context) {
		u, ok := ginoauth.CurrentUser(c)
		if !ok {
			c.String(http.StatusUnauthorized, "anonymous")
			return
		}
		answerDID(c, u.DID)
	})
	return nil
}

func randomID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// control is the harness's side door into the server process.
func (a *app) control() http.Handler {
	mux := http.NewServeMux()
	// GET /allocs?runs=N, header X-Bench-Header: the credential of a
	// logged-in client, a header line "Name: value". testing.AllocsPerRun of one request to the measured
	// route, served in process with httptest (no network).
	mux.HandleFunc("GET /allocs", func(w http.ResponseWriter, r *http.Request) {
		runs, _ := strconv.Atoi(r.URL.Query().Get("runs"))
		if runs <= 0 {
			runs = 1000
		}
		base := httptest.NewRequestWithContext(context.Background(), http.MethodGet, a.cfg.row.Path, nil)
		if name, value, ok := strings.Cut(r.Header.Get("X-Bench-Header"), ":"); ok {
			base.Header.Set(name, strings.TrimSpace(value))
		}
		var bad string
		allocs := testing.AllocsPerRun(runs, func() {
			// A fresh shallow copy per run (one allocation, in every row):
			// gorilla/sessions caches its registry in the *http.Request it
			// is given, which a reused request would turn into a cache hit.
			req := new(http.Request)
			*req = *base
			rec := httptest.NewRecorder()
			a.engine.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK && bad == "" {
				bad = fmt.Sprintf("%d %s", rec.Code, rec.Body.String())
			}
		})
		if bad != "" {
			http.Error(w, "the measured route answered "+bad, http.StatusConflict)
			return
		}
		writeJSON(w, map[string]any{"allocs": allocs, "runs": runs})
	})
	// POST /advance?by=D: the Manager's clock runs D further ahead (rows
	// whose client resends an older cookie).
	mux.HandleFunc("POST /advance", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("by"))
		if err != nil || d <= 0 {
			http.Error(w, "by: a positive duration", http.StatusBadRequest)
			return
		}
		writeJSON(w, map[string]any{"by": time.Duration(a.ahead.Add(int64(d))).String()})
	})
	// GET /heap: the live heap after two forced collections.
	mux.HandleFunc("GET /heap", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		writeJSON(w, map[string]any{"heap_alloc": ms.HeapAlloc, "heap_inuse": ms.HeapInuse, "heap_objects": ms.HeapObjects, "sys": ms.Sys})
	})
	// POST /fill?n=N: N expired entries in the kv table, in one statement
	// inside the database (as the gormstore cleanup benchmark loads them).
	mux.HandleFunc("POST /fill", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if a.kv == nil || n <= 0 {
			http.Error(w, "no SQL store, or no n", http.StatusBadRequest)
			return
		}
		start := time.Now()
		prefix := r.URL.Query().Get("prefix")
		if prefix == "" {
			prefix = "old:"
		}
		if err := fillExpired(a.kv, a.cfg.row.Store, a.cfg.table, prefix, n); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"rows": n, "seconds": time.Since(start).Seconds()})
	})
	// POST /purge: one gormstore DeleteExpired pass, as the store's cleanup
	// goroutine runs it in an app.
	mux.HandleFunc("POST /purge", func(w http.ResponseWriter, r *http.Request) {
		if a.kv == nil {
			http.Error(w, "no SQL store", http.StatusBadRequest)
			return
		}
		start := time.Now()
		n, err := a.kv.DeleteExpired(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"deleted": n, "seconds": time.Since(start).Seconds()})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// fillExpired inserts n entries that expired a minute ago (keys prefix+"1"
// to prefix+n, a one-byte value), generated inside the database, then, on
// Postgres, ANALYZEs the table as autovacuum would after a bulk load.
func fillExpired(s *gormstore.Store, store, table, prefix string, n int) error {
	q := `"` + table + `"`
	exp, created := time.Now().Add(-time.Minute).UTC(), time.Now().Add(-time.Hour).UTC()
	var res *gorm.DB
	switch store {
	case storeSQLite:
		const f = "2006-01-02 15:04:05.000000" // gormstore's SQLite time format
		res = s.DB().Exec(`WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
INSERT INTO `+q+` ("key", "value", "expires_at", "created_at", "updated_at")
SELECT ? || i, x'00', ?, ?, ? FROM seq`, n, prefix, exp.Format(f), created.Format(f), created.Format(f))
	case storePostgres:
		res = s.DB().Exec(`INSERT INTO `+q+` ("key", "value", "expires_at", "created_at", "updated_at")
SELECT CAST(? AS text) || i::text, decode('00', 'hex'), ?, ?, ? FROM generate_series(1, CAST(? AS int)) AS i`, prefix, exp, created, created, n)
	default:
		return fmt.Errorf("no bulk fill for %s", store)
	}
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected != int64(n) {
		return fmt.Errorf("inserted %d rows, want %d", res.RowsAffected, n)
	}
	if store == storePostgres {
		return s.DB().Exec(`ANALYZE ` + q).Error
	}
	return nil
}
