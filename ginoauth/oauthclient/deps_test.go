package oauthclient_test

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/gin-atproto/oauth-sessions/"

// goList returns the import paths pkg depends on (pkg included).
func goList(t *testing.T, pkg string, format string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH to run go list with")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", format, mod+pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

// The contract is a leaf: it imports only the standard library, so a client
// implementation links no web framework through it.
func TestContractImportsOnlyTheStandardLibrary(t *testing.T) {
	deps := goList(t, "ginoauth/oauthclient", "{{if not .Standard}}{{.ImportPath}}{{end}}")
	if len(deps) != 1 || deps[0] != mod+"ginoauth/oauthclient" {
		t.Errorf("oauthclient depends on %q; the contract must stay a leaf", deps)
	}
}

// The OAuth client adapter and the metrics adapter implement contracts and
// link no web framework: an app's background worker built on them does not
// carry Gin.
func TestAdaptersLinkNoWebFramework(t *testing.T) {
	forbidden := []string{"github.com/gin-gonic/", "github.com/gin-contrib/", "github.com/gorilla/"}
	for _, pkg := range []string{"ginoauth/indigoclient", "ginoauth/prommetrics"} {
		deps := goList(t, pkg, "{{.ImportPath}}")
		if !strings.Contains(strings.Join(deps, "\n"), mod+"ginoauth/oauthclient") {
			t.Errorf("go list output for %s does not look right: no ginoauth/oauthclient", pkg)
		}
		for _, d := range deps {
			if d == mod+"ginoauth" {
				t.Errorf("%s links the Gin-facing package ginoauth", pkg)
			}
			for _, bad := range forbidden {
				if strings.HasPrefix(d, bad) {
					t.Errorf("%s links %s", pkg, d)
				}
			}
		}
	}
}
