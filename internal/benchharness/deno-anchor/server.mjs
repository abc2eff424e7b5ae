// The session check of @tijs/hono-oauth-sessions, without its storage: a
// Hono app on @hono/node-server that opens the iron-session cookie the way
// that library's getSession does (getIronSession on the request, with its
// cookieName, password and ttl) and reads the session id from it. Run by
// internal/benchharness after install.sh put it next to its node_modules:
//
//   node server.mjs   (prints "READY http://127.0.0.1:<port>" when listening)
//
// Routes:
//   GET /bench/login  seals a session {sid, did, createdAt, lastAccessed}
//                     into the cookie, as the library's callback does
//   GET /me           unseals the cookie and answers {"did": the session's did}
//                     (401 without a session): one session check
//   GET /me-reseal    the same plus what the library's validateSession does
//                     with the cookie on every request: lastAccessed = now,
//                     session.save() (a new seal and a Set-Cookie)
import { randomBytes } from "node:crypto";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { getIronSession } from "iron-session";

const options = {
  cookieName: "sid",
  password: process.env.BENCH_COOKIE_SECRET || "an-example-cookie-secret-of-32-bytes!!",
  ttl: 60 * 60 * 24 * 7, // the library's default sessionTtl: 7 days
};
const did = "did:plc:" + "a".repeat(24);

const app = new Hono();

app.get("/bench/login", async (c) => {
  const session = await getIronSession(c.req.raw, c.res, options);
  session.sid = randomBytes(32).toString("base64url");
  session.did = did;
  session.createdAt = Date.now();
  session.lastAccessed = Date.now();
  await session.save();
  return c.text("ok");
});

app.get("/me", async (c) => {
  const session = await getIronSession(c.req.raw, c.res, options);
  if (!session.sid) {
    return c.text("anonymous", 401);
  }
  return c.json({ did: session.did });
});

app.get("/me-reseal", async (c) => {
  const session = await getIronSession(c.req.raw, c.res, options);
  if (!session.sid) {
    return c.text("anonymous", 401);
  }
  session.lastAccessed = Date.now();
  await session.save();
  return c.json({ did: session.did });
});

const server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: Number(process.env.PORT || 0) }, (info) => {
  console.log(`READY http://127.0.0.1:${info.port}`);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
