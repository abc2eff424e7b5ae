package refpds

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// These tests need no reference PDS: a stand-in server answers on loopback.

func writeEnvFile(t *testing.T, pdsURL string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "env")
	content := fmt.Sprintf(`# test
GINOAUTH_REFPDS_PDS_URL=%s
GINOAUTH_REFPDS_HOSTNAME=pds.test
GINOAUTH_REFPDS_ISSUER=https://pds.test
GINOAUTH_REFPDS_PLC_URL=http://localhost:1
GINOAUTH_REFPDS_PID=42
GINOAUTH_REFPDS_ACCOUNTS=alice,bob

GINOAUTH_REFPDS_ALICE_HANDLE=alice.test
GINOAUTH_REFPDS_ALICE_DID=did:plc:aaaaaaaaaaaaaaaaaaaaaaaa
GINOAUTH_REFPDS_ALICE_PASSWORD=alice-refpds-password
GINOAUTH_REFPDS_ALICE_EMAIL=alice@example.com
GINOAUTH_REFPDS_BOB_HANDLE=bob.test
GINOAUTH_REFPDS_BOB_DID="did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
GINOAUTH_REFPDS_BOB_PASSWORD=bob-refpds-password
`, pdsURL)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFromEnvNotRunning(t *testing.T) {
	t.Setenv(PDSURLVar, "")
	t.Setenv(EnvFileVar, filepath.Join(t.TempDir(), "missing-env"))
	_, err := FromEnv()
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("err = %v, want ErrNotRunning", err)
	}
	if !strings.Contains(err.Error(), "scripts/refpds/install.sh") || !strings.Contains(err.Error(), "scripts/refpds/start.sh") {
		t.Fatalf("error does not say how to start the server: %v", err)
	}

	// An env file left behind by a server that is gone.
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	t.Setenv(EnvFileVar, writeEnvFile(t, url))
	_, err = FromEnv()
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "stop.sh") {
		t.Fatalf("stale env file: err = %v, want ErrNotRunning with a restart hint", err)
	}
}

func TestDefaultEnvFile(t *testing.T) {
	t.Setenv(CacheVar, "/some/cache")
	if got := DefaultEnvFile(); got != "/some/cache/run/env" {
		t.Fatalf("DefaultEnvFile() = %q", got)
	}
	t.Setenv(CacheVar, "")
	t.Setenv("HOME", "/home/u")
	if got := DefaultEnvFile(); got != "/home/u/.cache/ginoauth-refpds/run/env" {
		t.Fatalf("DefaultEnvFile() = %q", got)
	}
}

func TestFromEnvFileAndTransport(t *testing.T) {
	var hosts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts = append(hosts, r.Host)
		switch {
		case r.URL.Path == "/xrpc/_health":
			fmt.Fprint(w, `{"version":"test"}`)
			return
		case r.URL.Path == "/xrpc/com.atproto.identity.resolveHandle" && r.URL.Query().Get("handle") == "alice.test":
			fmt.Fprint(w, `{"did":"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"}`)
			return
		case r.URL.Path == "/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa": // the PLC directory's answer
			fmt.Fprint(w, `{"id":"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa","alsoKnownAs":["at://alice.test"],
				"service":[{"id":"#atproto_pds","type":"AtprotoPersonalDataServer","serviceEndpoint":"https://pds.test"}]}`)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	t.Setenv(PDSURLVar, "")
	t.Setenv(EnvFileVar, writeEnvFile(t, srv.URL))

	env, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if env.PDSURL != srv.URL || env.Issuer != "https://pds.test" || env.Hostname != "pds.test" || env.PID != 42 {
		t.Fatalf("env = %+v", env)
	}
	if len(hosts) != 1 || hosts[0] != "pds.test" {
		t.Fatalf("health check reached the server with Host %v, want pds.test", hosts)
	}
	bob, err := env.Account("bob.test")
	if err != nil || bob.DID != "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb" || bob.Password != "bob-refpds-password" {
		t.Fatalf("Account(bob.test) = %+v, %v", bob, err)
	}
	if _, err := env.Account("carol"); err == nil {
		t.Fatal("Account(carol) found an account")
	}

	env.PLCURL = srv.URL // the directory asks the PLC there, the PDS through the transport
	ident, err := env.Directory().LookupHandle(context.Background(), syntax.Handle("alice.test"))
	if err != nil {
		t.Fatal(err)
	}
	if ident.DID != "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa" || ident.PDSEndpoint() != "https://pds.test" || ident.Handle != "alice.test" {
		t.Fatalf("directory: %s %s", ident.DID, ident.PDSEndpoint())
	}

	client := env.HTTPClient()
	for _, target := range []string{
		"https://example.com/",
		"http://pds.test/xrpc/_health",
		"https://pds.test:8443/xrpc/_health",
		"https://pds.test.evil/xrpc/_health",
		srv.URL + "/xrpc/_health",
	} {
		resp, err := client.Get(target)
		if err == nil {
			resp.Body.Close()
			t.Errorf("GET %s went through; want refused", target)
		} else if !strings.Contains(err.Error(), "refusing") {
			t.Errorf("GET %s: %v, want a refusal", target, err)
		}
	}
	resp, err := client.Get("https://pds.test:443/xrpc/_health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("https://pds.test:443: HTTP %d", resp.StatusCode)
	}
}

func TestFromEnvProcessEnvironment(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{}`)
	}))
	defer srv.Close()
	t.Setenv(EnvFileVar, filepath.Join(t.TempDir(), "not-read"))
	t.Setenv(PDSURLVar, srv.URL)
	t.Setenv("GINOAUTH_REFPDS_ACCOUNTS", "carol")
	t.Setenv("GINOAUTH_REFPDS_CAROL_HANDLE", "carol.test")
	t.Setenv("GINOAUTH_REFPDS_CAROL_DID", "did:plc:cccccccccccccccccccccccc")
	t.Setenv("GINOAUTH_REFPDS_CAROL_PASSWORD", "pw")
	env, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if env.Issuer != "https://pds.test" || len(env.Accounts()) != 1 || env.File != "" {
		t.Fatalf("env = %+v accounts %v", env, env.Accounts())
	}
}

func TestFromValuesRejectsNonLoopback(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:2583", "https://127.0.0.1:2583", "http://example.com:80", "http://127.0.0.1"} {
		if _, err := fromValues(map[string]string{"GINOAUTH_REFPDS_PDS_URL": u}); err == nil {
			t.Errorf("fromValues accepted PDS URL %s", u)
		}
	}
}
