package ginoauth

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// The callback answers the self-check's probe only with a valid MAC under
// this app's key, at most five minutes old; anything else is a callback.
func TestSelfCheckProbeNeedsAFreshMAC(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	cfg := validConfig()
	cfg.Now = func() time.Time { return now }
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	other := validConfig()
	other.CookieSecret = "another-secret-of-at-least-32-bytes!!"
	o, err := New(other)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	signed := func(m *Manager, at time.Time) string {
		nonce := strconv.FormatInt(at.Unix(), 10) + "-abc"
		return nonce + "." + m.selfCheckMAC(nonce)
	}
	for _, tc := range []struct {
		name, header string
		answered     bool
	}{
		{"fresh", signed(m, now), true},
		{"four minutes old", signed(m, now.Add(-4*time.Minute)), true},
		{"six minutes old", signed(m, now.Add(-6*time.Minute)), false},
		{"from the future", signed(m, now.Add(6*time.Minute)), false},
		{"another app's key", signed(o, now), false},
		{"no MAC", strconv.FormatInt(now.Unix(), 10) + "-abc", false},
		{"garbage", "x.y", false},
	} {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		c.Request = httptest.NewRequest(http.MethodGet, "https://app.example/oauth/callback", nil)
		c.Request.Header.Set(selfCheckHeader, tc.header)
		if got := m.answerSelfCheck(c); got != tc.answered {
			t.Errorf("%s: answered %v, want %v (%d %s)", tc.name, got, tc.answered, w.Code, w.Body)
		}
	}
}
