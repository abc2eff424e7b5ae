package ginoauth

import (
	"strings"
	"testing"
)

// FuzzAccountList: the session check's look at a cookie's account list
// never panics, and what it accepts is at most the limit, without the
// active session or any session twice, and reads back as it was written.
func FuzzAccountList(f *testing.F) {
	sid := func(c string) string { return strings.Repeat(c, sessionIDLen) }
	f.Add(sid("a")+".1700000000.1800000000", sid("z"), 5)
	f.Add(sid("a")+".1.2,"+sid("b")+".3.4", sid("z"), 3)
	f.Add(sid("a")+".1.2,"+sid("a")+".3.4", sid("z"), 5)
	f.Add(sid("z")+".1.2", sid("z"), 5)
	f.Add(",,", sid("z"), 5)
	f.Add(sid("a")+".-1.+2", sid("z"), 5)
	f.Fuzz(func(t *testing.T, o, active string, limit int) {
		limit = 1 + abs(limit)%maxAccountsCap
		maxUntil, ok := checkOthers(o, active, limit)
		if !ok {
			return
		}
		entries := parseOthers(o)
		if len(entries) > limit-1 || len(entries) != strings.Count(o, ",")+1 {
			t.Fatalf("accepted %d entries of %q with limit %d", len(entries), o, limit)
		}
		seen := map[string]bool{active: true}
		var latest int64
		for _, e := range entries {
			if seen[e.sid] || len(e.sid) != sessionIDLen || e.activity < 0 || e.until < 0 {
				t.Fatalf("accepted entry %+v of %q", e, o)
			}
			seen[e.sid] = true
			latest = max(latest, e.until)
		}
		if latest != maxUntil || joinEntries(entries) != o {
			t.Fatalf("%q reads back as %q (until %d, want %d)", o, joinEntries(entries), maxUntil, latest)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
