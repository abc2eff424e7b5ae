package ginoauth

import (
	"net/url"
	"testing"
)

func TestSafeReturnPath(t *testing.T) {
	allowed := []string{
		"/", "/dashboard", "/a/b?x=1&y=2", "/page#frag", "/caf%C3%A9", "/search?q=a%20b",
		"/search?q=%2F%2Fx", "/a?next=//x&u=%5C", "/my%20page", "/a//b", "/x?y#z%2F",
	}
	for _, p := range allowed {
		if got := safeReturnPath(p); got != p {
			t.Errorf("safeReturnPath(%q) = %q, want it kept", p, got)
		}
	}
	// Open-redirect payloads: every one must fall back to "/".
	rejected := []string{
		"", "dashboard", "//evil.example", "///evil.example", "/\\evil.example", "\\\\evil.example",
		"/%2fevil.example", "/%2Fevil.example", "/%5cevil.example", "/%5Cevil.example",
		"https://evil.example", "http:evil.example", "javascript:alert(1)", "//evil.example/%2e%2e",
		"/\tevil", "/\nevil", "/\r\nLocation: https://evil.example", "/\x00", "/a\\b",
		" /x", "/%00", "/x\x7f", "//@evil.example", "https:/evil.example", "data:text/html,x",
		"/" + string(make([]byte, maxReturnPath)),
		// Double encoding, dot segments, invisible and space-led variants.
		"/%252F%252Fevil.example", "/%25252F", "/.//evil.example", "/./", "/a/./b", "/a/../..//evil.example",
		"/%2e%2e/%2e%2e//evil.example", "/%2E/evil", "/\u200b/evil.example", "/%E2%80%8B/evil.example",
		"/ /evil.example", "/%C2%A0/evil", "/%EF%BB%BF", "/x%", "/%zz", "/ ",
	}
	for _, p := range rejected {
		if got := safeReturnPath(p); got != "/" {
			t.Errorf("safeReturnPath(%q) = %q, want \"/\"", p, got)
		}
	}
}

func FuzzSafeReturnPath(f *testing.F) {
	for _, s := range []string{"/", "//x", "/\\x", "/%2f", "/a?b#c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := safeReturnPath(raw)
		if got == "/" {
			return
		}
		if got != raw || got[0] != '/' || (len(got) > 1 && (got[1] == '/' || got[1] == '\\')) {
			t.Fatalf("unsafe path accepted: %q", raw)
		}
		for i := 0; i < len(got); i++ {
			if got[i] <= 0x20 || got[i] == '\\' || got[i] >= 0x7f {
				t.Fatalf("control, space, non-ASCII or backslash accepted: %q", raw)
			}
		}
		// What a browser would do with it: resolve dot segments; the result
		// must still be a path on this site.
		if u, err := url.Parse("https://app.example" + got); err != nil || u.Host != "app.example" {
			t.Fatalf("%q leaves the site: %v", raw, u)
		}
	})
}
