package ginoauth

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxReturnPath bounds the post-login return path kept in a flow record.
const maxReturnPath = 2048

// safeReturnPath returns raw if it is a safe post-login destination on this
// site, and "/" otherwise.
//
// The path and the query are checked by their own rules. The path must be
// plain: printable ASCII, starting with exactly one "/", with no backslash,
// no "." or ".." segment (resolved or not, they are how "/.//evil.example"
// turns into "//evil.example"), no percent-encoded "/", "\", "." or "%"
// (an encoded slash or a double encoding is how "/%2F%2Fevil.example"
// survives a check), and no space or invisible character (browsers drop or
// fold them). The query and fragment may hold anything printable, encoded
// slashes included ("/search?q=%2F%2Fx" is fine): they cannot change where
// the browser goes.
func safeReturnPath(raw string) string {
	if !isSafeReturnPath(raw) {
		return "/"
	}
	return raw
}

func isSafeReturnPath(raw string) bool {
	if raw == "" || len(raw) > maxReturnPath || raw[0] != '/' {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return false // controls, space, non-ASCII (zero-width and the like), backslash
		}
	}
	p := raw
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		p = raw[:i]
	}
	if len(p) > 1 && p[1] == '/' {
		return false
	}
	decoded, err := url.PathUnescape(p)
	if err != nil || strings.ContainsAny(decoded, "%\\") || strings.Count(decoded, "/") != strings.Count(p, "/") {
		return false // malformed, double-encoded, or an encoded slash or backslash
	}
	for _, seg := range strings.Split(decoded, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	if !utf8.ValidString(decoded) {
		return false
	}
	for _, r := range decoded {
		if r != ' ' && !unicode.IsPrint(r) || r >= 0x7f && unicode.IsSpace(r) {
			return false // an encoded control, format (zero-width, BOM) or odd space character
		}
	}
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil && u.Opaque == ""
}
