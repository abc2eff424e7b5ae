package ginoauth

import (
	"net/url"
	"strings"
)

// maxReturnPath bounds the post-login return path kept in a flow record.
const maxReturnPath = 2048

// SafeReturnPath returns raw if it is a safe post-login destination on this
// site, and "/" otherwise. Safe means a relative path, checked after parsing:
// it starts with exactly one "/", has no scheme, host or user info, and holds
// no backslash, control character, or percent-encoded slash or backslash.
// Browsers treat "/\evil.example" and "/%5Cevil.example" like
// "//evil.example", which is how a plain startsWith("/") check is
// bypassed; rejecting every such form is simpler than normalising them.
func SafeReturnPath(raw string) string {
	if !isSafeReturnPath(raw) {
		return "/"
	}
	return raw
}

func isSafeReturnPath(raw string) bool {
	if raw == "" || len(raw) > maxReturnPath || raw[0] != '/' {
		return false
	}
	if len(raw) > 1 && (raw[1] == '/' || raw[1] == '\\') {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	lower := strings.ToLower(raw)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%00") {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return false
	}
	// Percent-decoding must not produce what the raw checks rejected.
	p := u.Path
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
