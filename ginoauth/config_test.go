package ginoauth

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// nopClient satisfies oauthclient.Client for configuration tests that never log in.
type nopClient struct{}

func (nopClient) Authorize(context.Context, oauthclient.AuthorizeRequest) (*oauthclient.Authorization, error) {
	return nil, errors.New("not used")
}
func (nopClient) Callback(context.Context, url.Values, time.Duration) (*oauthclient.Grant, error) {
	return nil, errors.New("not used")
}
func (nopClient) Resume(context.Context, string, string) (oauthclient.Session, error) {
	return nil, oauthclient.ErrSessionGone
}
func (nopClient) Revoke(context.Context, string, string) error { return nil }

// mapStorage is the smallest Storage there is, without Take, for config tests.
type mapStorage struct{}

func (mapStorage) Get(context.Context, string) ([]byte, error)              { return nil, storage.ErrNotFound }
func (mapStorage) Set(context.Context, string, []byte, time.Duration) error { return nil }
func (mapStorage) Delete(context.Context, string) error                     { return nil }

func validConfig() Config {
	return Config{
		OAuthClient:  nopClient{},
		Storage:      mapStorage{},
		CookieSecret: strings.Repeat("s", 32),
		BaseURL:      "https://app.example",
	}
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		field  string
		mutate func(*Config)
	}{
		{"OAuthClient", func(c *Config) { c.OAuthClient = nil }},
		{"Storage", func(c *Config) { c.Storage = nil }},
		{"CookieSecret", func(c *Config) { c.CookieSecret = strings.Repeat("s", 31) }},
		{"OldCookieSecrets", func(c *Config) { c.OldCookieSecrets = []string{"short"} }},
		{"BaseURL", func(c *Config) { c.BaseURL = "" }},
		{"BaseURL", func(c *Config) { c.BaseURL = "app.example" }},
		{"BaseURL", func(c *Config) { c.BaseURL = "http://app.example" }},
		{"BaseURL", func(c *Config) { c.BaseURL = "https://app.example/sub" }},
		{"BaseURL", func(c *Config) { c.BaseURL = "ftp://app.example" }},
		{"CookieName", func(c *Config) { c.CookieName = "bad name" }},
		{"CookieName", func(c *Config) { c.CookieName = "__Host-sid"; c.CookieDomain = "app.example" }},
		{"CookieName", func(c *Config) { c.CookieName = "__Host-sid"; c.BaseURL = "http://127.0.0.1:8080" }},
		{"SessionTTL", func(c *Config) { c.SessionTTL = time.Second }},
		{"IdleTimeout", func(c *Config) { c.IdleTimeout = -time.Second }},
		{"FlowTTL", func(c *Config) { c.FlowTTL = 2 * time.Hour }},
		{"Routes.Login", func(c *Config) { c.Routes.Login = "login" }},
		{"LocalDomains", func(c *Config) { c.LocalDomains = []string{".test"} }},
		{"LocalDomains", func(c *Config) { c.LocalDomains = []string{"Test"} }},
		{"LocalDomains", func(c *Config) { c.LocalDomains = []string{"127.0.0.1"} }},
		{"LocalDomains", func(c *Config) { c.LocalDomains = []string{"https://pds.test"} }},
	}
	for _, tc := range cases {
		cfg := validConfig()
		tc.mutate(&cfg)
		_, err := New(cfg)
		var ce *ConfigurationError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: want ConfigurationError on that field, got %v", tc.field, err)
		}
	}
}

func TestConfigDefaultsAndCookieSecurity(t *testing.T) {
	m, err := New(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.cfg
	if cfg.CookieName != "__Host-sid" || cfg.SessionTTL != 0 || cfg.FlowTTL != 10*time.Minute || cfg.Routes.Callback != "/oauth/callback" {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	if !m.sessionCookie.Secure || !m.sessionCookie.HttpOnly {
		t.Fatalf("https app must get Secure HttpOnly cookies: %+v", m.sessionCookie)
	}
	dev := validConfig()
	dev.BaseURL = "http://127.0.0.1:8080"
	m, err = New(dev)
	if err != nil {
		t.Fatal(err)
	}
	if m.sessionCookie.Secure {
		t.Fatal("loopback http development cannot use Secure cookies")
	}
	host := validConfig()
	host.CookieName = "__Host-sid"
	if _, err := New(host); err != nil {
		t.Fatalf("__Host- cookie on https must be accepted: %v", err)
	}
	shared := validConfig()
	shared.CookieDomain = "app.example"
	if m, err = New(shared); err != nil || m.cfg.CookieName != "sid" {
		t.Fatalf("with a CookieDomain the __Host- prefix cannot apply: %v", err)
	}
}
