package ginoauth

import "testing"

func TestSafeReturnPath(t *testing.T) {
	allowed := []string{
		"/", "/dashboard", "/a/b?x=1&y=2", "/page#frag", "/caf%C3%A9", "/search?q=a%20b", "/a/./b",
	}
	for _, p := range allowed {
		if got := SafeReturnPath(p); got != p {
			t.Errorf("SafeReturnPath(%q) = %q, want it kept", p, got)
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
	}
	for _, p := range rejected {
		if got := SafeReturnPath(p); got != "/" {
			t.Errorf("SafeReturnPath(%q) = %q, want \"/\"", p, got)
		}
	}
}

func FuzzSafeReturnPath(f *testing.F) {
	for _, s := range []string{"/", "//x", "/\\x", "/%2f", "/a?b#c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := SafeReturnPath(raw)
		if got == "/" {
			return
		}
		if got != raw || got[0] != '/' || (len(got) > 1 && (got[1] == '/' || got[1] == '\\')) {
			t.Fatalf("unsafe path accepted: %q", raw)
		}
		for i := 0; i < len(got); i++ {
			if got[i] < 0x20 || got[i] == '\\' || got[i] == 0x7f {
				t.Fatalf("control or backslash accepted: %q", raw)
			}
		}
	})
}
