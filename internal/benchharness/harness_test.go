package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
)

func TestAccounts(t *testing.T) {
	for _, i := range []int{0, 1, 7, 999, 123456} {
		h, did := accountHandle(i), accountDID(i)
		if _, err := syntax.ParseDID(did.String()); err != nil {
			t.Fatalf("account %d: %v", i, err)
		}
		if got, ok := accountFromHandle(syntax.Handle(h)); !ok || got != i {
			t.Errorf("accountFromHandle(%s) = %d, %v", h, got, ok)
		}
		if got, ok := accountFromDID(did); !ok || got != i {
			t.Errorf("accountFromDID(%s) = %d, %v", did, got, ok)
		}
	}
	for _, h := range []string{"bob.test", "u0.test", "u01.test", "u1.example"} {
		if _, ok := accountFromHandle(syntax.Handle(h)); ok {
			t.Errorf("accountFromHandle(%s) accepted", h)
		}
	}
}

func TestSelectRows(t *testing.T) {
	rows, err := selectRows("ginoauth/memstore*")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rows {
		names = append(names, r.Name)
	}
	want := []string{bareRow, "ginoauth/memstore", "ginoauth/memstore+idle", "ginoauth/memstore+idle+old-cookie", "ginoauth/memstore+cache", "ginoauth/memstore+idle+cache", "ginoauth/memstore+bearer", "ginoauth/memstore+5-accounts"}
	if len(names) != len(want) {
		t.Fatalf("got %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("got %v, want %v", names, want)
		}
	}
	if _, err := selectRows("nothing"); err == nil {
		t.Error("a pattern matching nothing was accepted")
	}
	def, _ := selectRows("default")
	all, _ := selectRows("all")
	if len(def) >= len(all) || len(all) != len(allRows()) {
		t.Errorf("default %d rows, all %d, known %d", len(def), len(all), len(allRows()))
	}
}

func TestMedianAndWrkSeconds(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
	for d, want := range map[time.Duration]int{0: 1, 500 * time.Millisecond: 1, time.Second: 1, 1500 * time.Millisecond: 2, 5 * time.Second: 5} {
		if got := wrkSeconds(d); got != want {
			t.Errorf("wrkSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

// TestGinoauthServer wires a ginoauth row as a server process does (the
// directory and transport of the harness, the authorization server in
// another "process"), runs a real login, and checks the measured route and
// the allocation count of the control API.
func TestGinoauthServer(t *testing.T) {
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	for i := range 5 {
		as.CreateAccount(ginoauthtest.Account{Handle: syntax.Handle(accountHandle(i)), DID: accountDID(i)})
	}
	for _, name := range []string{"ginoauth/memstore+idle", "ginoauth/sqlitestore+cache", "ginoauth/memstore+idle+old-cookie", "ginoauth/sqlitestore+bearer", "ginoauth/memstore+5-accounts", "ginoauth/sqlitestore+5-accounts"} {
		t.Run(name, func(t *testing.T) {
			row, _ := rowByName(name)
			var lc net.ListenConfig
			ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			appURL := "http://" + ln.Addr().String()
			a, err := buildApp(serverConfig{row: row, asURL: as.URL(), accounts: 5, secret: randomID(),
				sqlitePath: filepath.Join(t.TempDir(), "s.db"), prefix: "bh_test"}, appURL)
			if err != nil {
				t.Fatal(err)
			}
			srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: a.engine, ReadHeaderTimeout: 5 * time.Second}}
			srv.Start()
			t.Cleanup(func() { srv.Close(); a.close() })
			ctl := httptest.NewServer(a.control())
			t.Cleanup(ctl.Close)

			h := &harness{as: as}
			ctx := context.Background()
			c, err := h.loginGinoauth(ctx, appURL, accountHandle(2))
			if err != nil {
				t.Fatal(err)
			}
			cookie := "Cookie: " + c.Name + "=" + c.Value
			// check wants account 0's DID; account 2 answers its own.
			if err := check(ctx, appURL+"/me", cookie); err == nil {
				t.Error("account 2 answered account 0's DID")
			}
			if _, err := h.loginGinoauth(ctx, appURL, accountHandle(0)); err != nil {
				t.Fatal(err)
			}
			s := &server{appURL: appURL, ctlURL: ctl.URL}
			cred, err := h.login(ctx, row, s)
			if err != nil {
				t.Fatal(err)
			}
			if want := "Cookie: sid="; row.Bearer != !strings.HasPrefix(cred, want) {
				t.Errorf("the credential of %s is %.20q...", row.Name, cred)
			}
			if row.Accounts > 1 {
				// The browser holds five accounts, account 0 active: the
				// session route lists them all.
				if n := accountsListed(t, appURL, cred); n != row.Accounts {
					t.Errorf("the browser holds %d accounts, want %d", n, row.Accounts)
				}
			}
			if row.OldCookie {
				// The clock moved past the reseal interval: the first
				// check reseals, the next ones do not (the client
				// ignored the new cookie).
				if n := setCookies(t, appURL+"/me", cred); n != 1 {
					t.Errorf("an old cookie's first check set %d cookies, want 1", n)
				}
				if n := setCookies(t, appURL+"/me", cred); n != 0 {
					t.Errorf("the old cookie was resealed again at once (%d Set-Cookie)", n)
				}
			}
			if err := check(ctx, appURL+"/me", cred); err != nil {
				t.Fatal(err)
			}
			if err := check(ctx, appURL+"/me", ""); err == nil {
				t.Error("anonymous request answered 200")
			}
			var out struct{ Allocs float64 }
			if err := s.control(ctx, http.MethodGet, "/allocs?runs=50", http.Header{"X-Bench-Header": {cred}}, &out); err != nil {
				t.Fatal(err)
			}
			if out.Allocs <= 0 {
				t.Errorf("allocs = %v", out.Allocs)
			}
		})
	}
}

// setCookies is the number of Set-Cookie headers of one GET with the
// credential header cred.
func setCookies(t *testing.T, target, cred string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	name, value, _ := strings.Cut(cred, ":")
	req.Header.Set(name, strings.TrimSpace(value))
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", target, resp.StatusCode)
	}
	return len(resp.Header.Values("Set-Cookie"))
}

// accountsListed is the number of accounts /api/session lists for the
// credential header cred.
func accountsListed(t *testing.T, appURL, cred string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, appURL+"/api/session", nil)
	name, value, _ := strings.Cut(cred, ":")
	req.Header.Set(name, strings.TrimSpace(value))
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Accounts []struct {
			DID    string `json:"did"`
			Active bool   `json:"active"`
		} `json:"accounts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/session: %d %v", resp.StatusCode, err)
	}
	if len(out.Accounts) > 0 && (!out.Accounts[0].Active || out.Accounts[0].DID != accountDID(0).String()) {
		t.Errorf("the active account is %+v, want account 0", out.Accounts[0])
	}
	return len(out.Accounts)
}
