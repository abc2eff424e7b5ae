package storage_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The storage contract, every store and the behaviour suite link no web
// framework and no OAuth client: a store for your own database brings only
// what that database needs.
func TestStoresLinkNoFrameworkOrOAuthClient(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH to run go list with")
	}
	const mod = "github.com/gin-atproto/oauth-sessions/"
	pkgs := []string{
		"ginoauth/storage", "ginoauth/storagetest",
		"stores/memstore", "stores/gormstore", "stores/sqlitestore", "stores/postgresstore", "stores/redisstore",
	}
	forbidden := []string{"github.com/gin-gonic/", "github.com/gin-contrib/", "github.com/gorilla/", "github.com/bluesky-social/", mod + "ginoauth\n"}
	for _, pkg := range pkgs {
		out, err := exec.Command(goBin, "list", "-deps", mod+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := string(out) + "\n"
		if !strings.Contains(deps, mod+"ginoauth/storage\n") {
			t.Errorf("go list output for %s does not look right: no ginoauth/storage in\n%s", pkg, deps)
		}
		for _, bad := range forbidden {
			if strings.Contains(deps, bad) {
				t.Errorf("%s links %s", pkg, strings.TrimSpace(bad))
			}
		}
	}
}
