#!/usr/bin/env python3
"""Removes each fix of issue 19 once and checks that its test fails.

Each mutant below replaces one snippet of the library (the fix) with code
that undoes it, runs the test that guards the fix, and puts the file back.
Every mutant must make its test fail. A snippet that is no longer in its
file (the code moved on) stops the script: update the mutant.

    GINOAUTH_TEST_POSTGRES_DSN=... GINOAUTH_TEST_REDIS_ADDR=... \
        python3 scripts/issue19-mutants.py [test-name ...]
"""
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# (test run pattern, file, snippet of the fix, its removal)
MUTANTS = [
    ("TestConcurrentRotationsAcrossInstances|TestAttacks/^concurrent-rotation$", "ginoauth/session_lock.go",
     "	if l, ok := ds.store.(storage.Locker); ok {\n		unlock, err = l.Lock(wctx, name, lease)",
     "	if l, ok := ds.store.(storage.Locker); ok && false {\n		unlock, err = l.Lock(wctx, name, lease)\n	} else if true {\n		unlock = func(context.Context) error { return nil }"),
    ("TestRotationFaultAtEachStep", "ginoauth/native_token.go",
     "		return m.storeSuccessor(ctx, hash, &rec, token, true)",
     "		return mobileAnswer(token, &rec), nil"),
    ("TestRotationDuringAnOutageKeepsTheToken", "ginoauth/native_token.go",
     "			if r.Status >= http.StatusInternalServerError {",
     "			if false && r.Status >= http.StatusInternalServerError {"),
    ("TestDeviceLockWithoutALocker", "ginoauth/session_lock.go",
     "		unlock, err = ds.localLocks.lock(wctx, name)",
     "		unlock = func(context.Context) error { return nil }"),
    ("TestOriginCheckWithBrowserHeaders|TestAttacks/^origin-browser-headers$", "ginoauth/origin_check.go",
     "	return m.originCheck.Check(r) != nil\n}",
     # the check before this issue: Sec-Fetch-Site same-site or cross-site refused before the allowed list was read
     "	sfs, origin := r.Header.Get(\"Sec-Fetch-Site\"), r.Header.Get(\"Origin\")\n"
     "	if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {\n		return false\n	}\n"
     "	if sfs == \"cross-site\" || sfs == \"same-site\" {\n		return true\n	}\n"
     "	return origin != \"\" && origin != m.origin && !strings.Contains(\" \"+strings.Join(m.cfg.AllowedOrigins, \" \")+\" \", \" \"+origin+\" \")\n}"),
    ("TestOriginCheckWithBrowserHeaders", "ginoauth/origin_check.go",
     "	for _, o := range append([]string{origin}, allowed...) {",
     "	for _, o := range allowed {"),
    ("TestAttacks/^post-query-parameters$", "ginoauth/request_body.go",
     "	return c.Request.PostForm, true\n}", "	return c.Request.Form, true\n}"),
    ("TestAttacks/^duplicate-json-keys$|TestDecodeJSONObject", "ginoauth/request_body.go",
     "		if seen[key] {\n", "		if false && seen[key] {\n"),
    ("TestAttacks/^cors-simple-request$", "ginoauth/request_body.go",
     "	if !isJSON(c.Request) {\n		return &requestError", "	if false && !isJSON(c.Request) {\n		return &requestError"),
    ("TestAttacks/^code-reuse$", "ginoauth/native_code_exchange.go",
     "	var spent spentCode\n	switch err", "	var spent spentCode\n	if true {\n		return nil\n	}\n	switch err"),
    ("TestAttacks/^two-authorization-headers$", "ginoauth/middleware.go",
     "	if len(c.Request.Header.Values(\"Authorization\")) > 1 {",
     "	if false && len(c.Request.Header.Values(\"Authorization\")) > 1 {"),
    ("TestAttacks/^private-server-names$", "ginoauth/login_names.go",
     "	if server != \"\" {\n		if u, err", "	if false && server != \"\" {\n		if u, err"),
    ("TestAttacks/^reserved-name-handles$", "ginoauth/login_names.go",
     "	if !hostless && !m.publicName(", "	if false && !hostless && !m.publicName("),
    ("TestAttacks/^auth-only-token-writes$", "ginoauth/web_login.go",
     "	if a, ok := m.client.(oauthclient.Authenticator); ok {",
     "	if a, ok := m.client.(oauthclient.Authenticator); ok && false {"),
    ("TestAttacks/^narrowed-scopes$", "ginoauth/oauth_session.go",
     "	same := len(now) == 0 || slices.Equal(now, s.known)", "	same := true || slices.Equal(now, s.known)"),
    ("TestAttacks/^cookie-domain-tossing$", "ginoauth/cookie_format.go",
     "				if found && a != v1 {", "				if false && found && a != v1 {"),
    ("TestAttacks/^planted-flow-cookie$", "ginoauth/manager.go",
     "	if !secure {\n		return cookieName + \"_flow\"", "	if true {\n		return cookieName + \"_flow\""),
    ("TestAttacks/^logout-cache-delay$", "ginoauth/session_core.go",
     "	if e == nil || now.Sub(e.read) >= rc.ttl || now.Before(e.read) {",
     "	if e == nil || now.Before(e.read) {"),
    ("TestAttacks/^attacker-started-native-flow$", "ginoauth/manager.go",
     "		if u, err := url.Parse(uri); err == nil && u.Scheme != \"https\" && u.Scheme != \"http\" {",
     "		if u, err := url.Parse(uri); err == nil && false && u.Scheme != \"https\" {"),
]


def main() -> int:
    only = sys.argv[1:]
    survived = 0
    for pattern, path, fix, removal in MUTANTS:
        if only and not any(o in pattern for o in only):
            continue
        full = os.path.join(ROOT, path)
        with open(full) as f:
            src = f.read()
        if src.count(fix) != 1:
            print(f"{path}: the fix for {pattern} is not where this script expects it; update the mutant")
            return 2
        with open(full, "w") as f:
            f.write(src.replace(fix, removal))
        try:
            r = subprocess.run(["go", "test", "./ginoauth/", "-count=1", "-run", pattern],
                               cwd=ROOT, capture_output=True, text=True)
        finally:
            with open(full, "w") as f:
                f.write(src)
        out = r.stdout + r.stderr
        if r.returncode == 0:
            survived += 1
            print(f"SURVIVED  {pattern}  ({path})")
        else:
            why = next((l.strip() for l in out.splitlines() if "_test.go" in l or "build failed" in l), "")
            print(f"killed    {pattern}  ({path})\n          {why[:200]}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
