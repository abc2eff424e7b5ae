package ginoauthtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// record is one stored repository record.
type record struct {
	value   json.RawMessage
	cid     string
	created time.Time
}

// authInfo is a request authenticated with a DPoP-bound access token.
type authInfo struct {
	did   syntax.DID
	scope string
}

func xrpcError(w http.ResponseWriter, status int, name, msg string) {
	writeJSON(w, status, map[string]string{"error": name, "message": msg})
}

// quoteParam makes s safe inside a quoted WWW-Authenticate parameter.
func quoteParam(s string) string {
	return strings.NewReplacer(`"`, "'", `\`, "/", "\r", " ", "\n", " ").Replace(s)
}

// authError answers a resource-server authentication failure the RFC 9449 /
// RFC 6750 way: 401 with WWW-Authenticate: DPoP error="...",
// error_description="...", and the same code in the XRPC error body.
func authError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`DPoP algs="ES256", error="%s", error_description="%s"`, code, quoteParam(desc)))
	xrpcError(w, http.StatusUnauthorized, code, desc)
}

// authenticate checks the Authorization and DPoP headers of a PDS request.
// Without an Authorization header it returns (nil, true) unless required.
// When it returns false it has written the answer.
//
// Checks, in order: the DPoP scheme (a DPoP-bound token sent as Bearer is
// refused); the DPoP proof (see checkDPoP), with nonce errors answered
// error="use_dpop_nonce" plus a DPoP-Nonce header, and ath = SHA-256 of the
// token; then the token: issued here, current, its session alive and
// unexpired, not expired itself (error="invalid_token"), and bound to the
// proof's key (error="invalid_token", "Invalid DPoP key binding").
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, required bool) (*authInfo, bool) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		if !required {
			return nil, true
		}
		w.Header().Set("WWW-Authenticate", `DPoP algs="ES256"`)
		xrpcError(w, http.StatusUnauthorized, "AuthenticationRequired", "Authentication Required")
		return nil, false
	}
	scheme, token, _ := strings.Cut(authz, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "DPoP") || token == "" {
		authError(w, "invalid_request", "Expected the DPoP authorization scheme with a DPoP-bound access token")
		return nil, false
	}
	proof, perr := s.checkDPoP(r, token)
	if perr != nil {
		if perr.code == "use_dpop_nonce" {
			authError(w, perr.code, "Resource server requires nonce in DPoP proof")
		} else {
			authError(w, perr.code, perr.desc)
		}
		s.log.Info("PDS request rejected", "path", r.URL.Path, "error", perr.code, "description", perr.desc)
		return nil, false
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.access[token]
	var desc string
	switch {
	case !ok:
		if id, known := s.tokens[token]; known {
			if s.sessions[id].endReason != "" {
				desc = "The access token has been revoked"
			} else {
				desc = "The access token was replaced by a refresh"
			}
		} else {
			desc = "Invalid access token"
		}
	case sess.endReason != "":
		desc = "The access token has been revoked"
	case !s.now().Before(sess.accessExpires):
		desc = "The access token expired"
	case proof.jkt != sess.jkt:
		desc = "Invalid DPoP key binding"
	}
	if desc != "" {
		s.log.Info("PDS request rejected", "path", r.URL.Path, "error", "invalid_token", "description", desc)
		authError(w, "invalid_token", desc)
		return nil, false
	}
	return &authInfo{did: sess.did, scope: sess.scope}, true
}

func (s *Server) handleXRPC(w http.ResponseWriter, r *http.Request) {
	s.setNonceHeader(w)
	nsid := r.PathValue("nsid")
	type endpoint struct {
		method   string
		required bool
		h        func(http.ResponseWriter, *http.Request, *authInfo)
	}
	endpoints := map[string]endpoint{
		"_health":                       {http.MethodGet, false, s.xrpcHealth},
		"com.atproto.server.getSession": {http.MethodGet, true, s.xrpcGetSession},
		"com.atproto.repo.createRecord": {http.MethodPost, true, s.xrpcCreateRecord},
		"com.atproto.repo.putRecord":    {http.MethodPost, true, s.xrpcPutRecord},
		"com.atproto.repo.deleteRecord": {http.MethodPost, true, s.xrpcDeleteRecord},
		"com.atproto.repo.getRecord":    {http.MethodGet, false, s.xrpcGetRecord},
		"com.atproto.repo.listRecords":  {http.MethodGet, false, s.xrpcListRecords},
		"app.bsky.actor.getProfile":     {http.MethodGet, false, s.xrpcGetProfile},

		"com.atproto.sync.getRepoStatus": {http.MethodGet, false, s.xrpcGetRepoStatus},
	}
	ep, ok := endpoints[nsid]
	if !ok {
		xrpcError(w, http.StatusNotImplemented, "MethodNotImplemented", "Method not implemented by ginoauthtest: "+nsid)
		return
	}
	headOfGet := ep.method == http.MethodGet && r.Method == http.MethodHead
	if r.Method != ep.method && !headOfGet {
		w.Header().Set("Allow", ep.method)
		xrpcError(w, http.StatusMethodNotAllowed, "InvalidRequest", nsid+" requires HTTP "+ep.method)
		return
	}
	// Authentication is checked whenever credentials are sent, even on
	// public endpoints, like the reference PDS does for optional auth.
	auth, ok := s.authenticate(w, r, ep.required)
	if r.Header.Get("Authorization") != "" {
		s.mu.Lock()
		s.pdsCalls[strings.ToLower(strings.TrimSuffix(r.Host, ":443"))]++
		s.mu.Unlock()
	}
	if !ok {
		return
	}
	if auth != nil && s.accountRefusal(w, auth.did, ep.method == http.MethodPost) {
		return
	}
	ep.h(w, r, auth)
}

func (s *Server) xrpcHealth(w http.ResponseWriter, r *http.Request, _ *authInfo) {
	writeJSON(w, http.StatusOK, map[string]string{"version": "ginoauthtest"})
}

func (s *Server) xrpcGetSession(w http.ResponseWriter, r *http.Request, auth *authInfo) {
	s.mu.Lock()
	a := s.accounts[auth.did]
	s.mu.Unlock()
	if a == nil {
		xrpcError(w, http.StatusBadRequest, "AccountNotFound", "Account not found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"did": a.DID, "handle": a.Handle, "active": true})
}

func (s *Server) xrpcGetProfile(w http.ResponseWriter, r *http.Request, _ *authInfo) {
	actor := r.URL.Query().Get("actor")
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupAccountLocked(actor)
	if a == nil {
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", "Profile not found")
		return
	}
	out := map[string]any{"did": a.DID, "handle": a.Handle}
	name := a.DisplayName
	// A profile record written through the PDS wins, like on the network.
	if rec := s.records[a.DID]["app.bsky.actor.profile"]["self"]; rec != nil {
		var p struct {
			DisplayName string `json:"displayName"`
			Description string `json:"description"`
		}
		if json.Unmarshal(rec.value, &p) == nil {
			if p.DisplayName != "" {
				name = p.DisplayName
			}
			if p.Description != "" {
				out["description"] = p.Description
			}
		}
	}
	if name != "" {
		out["displayName"] = name
	}
	writeJSON(w, http.StatusOK, out)
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", "request body too large or unreadable")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", "request body is not valid JSON for this method: "+err.Error())
		return false
	}
	return true
}

// writeTarget resolves and checks the repo and collection of a write, and
// that the token's scope allows every one of actions on the collection.
func (s *Server) writeTarget(w http.ResponseWriter, auth *authInfo, repo, collection string, actions ...string) bool {
	s.mu.Lock()
	a := s.lookupAccountLocked(repo)
	s.mu.Unlock()
	if a == nil || a.DID != auth.did {
		xrpcError(w, http.StatusForbidden, "Forbidden", "repo must be the authenticated account")
		return false
	}
	if _, err := syntax.ParseNSID(collection); err != nil {
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", "collection must be a valid NSID")
		return false
	}
	for _, act := range actions {
		if !canWrite(auth.scope, collection, act) {
			// The reference PDS's error name and message.
			xrpcError(w, http.StatusForbidden, "InsufficientScope",
				fmt.Sprintf("Missing required scope %q", neededScope(collection, act)))
			return false
		}
	}
	return true
}

// recordCID is a deterministic, syntactically valid CIDv1 (dag-cbor,
// sha-256) over the record's compact JSON. It is not the real DAG-CBOR CID.
func recordCID(value []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, value) != nil {
		buf.Reset()
		buf.Write(value)
	}
	sum := sha256.Sum256(buf.Bytes())
	return "b" + lowerBase32.EncodeToString(append([]byte{0x01, 0x71, 0x12, 0x20}, sum[:]...))
}

func checkRecordValue(w http.ResponseWriter, value json.RawMessage, collection string) bool {
	if !isJSONObject(value) {
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", "record must be a JSON object")
		return false
	}
	var typed struct {
		Type *string `json:"$type"`
	}
	_ = json.Unmarshal(value, &typed)
	if typed.Type != nil && *typed.Type != collection {
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("Invalid $type: expected %s, got %s", collection, *typed.Type))
		return false
	}
	return true
}

func (s *Server) putLocked(did syntax.DID, collection, rkey string, value json.RawMessage) *record {
	colls := s.records[did]
	if colls == nil {
		colls = map[string]map[string]*record{}
		s.records[did] = colls
	}
	recs := colls[collection]
	if recs == nil {
		recs = map[string]*record{}
		colls[collection] = recs
	}
	rec := &record{value: append(json.RawMessage(nil), value...), cid: recordCID(value), created: s.now()}
	recs[rkey] = rec
	return rec
}

// repoLocked resolves the repo parameter of a read: an account (handle or
// DID), or the server's lexicon repository did:web:<host>.
func (s *Server) repoLocked(repo string) (syntax.DID, bool) {
	if a := s.lookupAccountLocked(repo); a != nil {
		return a.DID, true
	}
	if strings.TrimSpace(repo) == s.lexDID.String() {
		return s.lexDID, true
	}
	return "", false
}

func atURI(did syntax.DID, collection, rkey string) string {
	return "at://" + did.String() + "/" + collection + "/" + rkey
}

func (s *Server) xrpcCreateRecord(w http.ResponseWriter, r *http.Request, auth *authInfo) {
	var in struct {
		Repo       string          `json:"repo"`
		Collection string          `json:"collection"`
		Rkey       string          `json:"rkey"`
		Record     json.RawMessage `json:"record"`
	}
	if !decodeBody(w, r, &in) || !s.writeTarget(w, auth, in.Repo, in.Collection, "create") || !checkRecordValue(w, in.Record, in.Collection) {
		return
	}
	if in.Rkey != "" {
		if _, err := syntax.ParseRecordKey(in.Rkey); err != nil {
			xrpcError(w, http.StatusBadRequest, "InvalidRequest", "invalid rkey")
			return
		}
	}
	s.mu.Lock()
	rkey := in.Rkey
	if rkey == "" {
		rkey = s.tid.Next().String()
	}
	if s.records[auth.did][in.Collection][rkey] != nil {
		s.mu.Unlock()
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", "Record already exists: "+atURI(auth.did, in.Collection, rkey))
		return
	}
	rec := s.putLocked(auth.did, in.Collection, rkey, in.Record)
	rev := s.tid.Next().String()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"uri":              atURI(auth.did, in.Collection, rkey),
		"cid":              rec.cid,
		"commit":           map[string]string{"cid": rec.cid, "rev": rev},
		"validationStatus": "unknown",
	})
}

// xrpcPutRecord creates or replaces a record. Like the reference PDS, it
// needs both the create and the update permission on the collection,
// whether or not the record exists.
func (s *Server) xrpcPutRecord(w http.ResponseWriter, r *http.Request, auth *authInfo) {
	var in struct {
		Repo       string          `json:"repo"`
		Collection string          `json:"collection"`
		Rkey       string          `json:"rkey"`
		Record     json.RawMessage `json:"record"`
	}
	if !decodeBody(w, r, &in) || !s.writeTarget(w, auth, in.Repo, in.Collection, "create", "update") || !checkRecordValue(w, in.Record, in.Collection) {
		return
	}
	if _, err := syntax.ParseRecordKey(in.Rkey); err != nil {
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", "rkey is required and must be a valid record key")
		return
	}
	s.mu.Lock()
	rec := s.putLocked(auth.did, in.Collection, in.Rkey, in.Record)
	rev := s.tid.Next().String()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"uri":              atURI(auth.did, in.Collection, in.Rkey),
		"cid":              rec.cid,
		"commit":           map[string]string{"cid": rec.cid, "rev": rev},
		"validationStatus": "unknown",
	})
}

func (s *Server) xrpcDeleteRecord(w http.ResponseWriter, r *http.Request, auth *authInfo) {
	var in struct {
		Repo       string `json:"repo"`
		Collection string `json:"collection"`
		Rkey       string `json:"rkey"`
	}
	if !decodeBody(w, r, &in) || !s.writeTarget(w, auth, in.Repo, in.Collection, "delete") {
		return
	}
	s.mu.Lock()
	delete(s.records[auth.did][in.Collection], in.Rkey)
	rev := s.tid.Next().String()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"commit": map[string]string{"rev": rev}})
}

func (s *Server) xrpcGetRecord(w http.ResponseWriter, r *http.Request, _ *authInfo) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	did, ok := s.repoLocked(q.Get("repo"))
	if !ok {
		xrpcError(w, http.StatusBadRequest, "RepoNotFound", "Could not find repo: "+q.Get("repo"))
		return
	}
	if s.repoRefusalLocked(w, did) {
		return
	}
	coll, rkey := q.Get("collection"), q.Get("rkey")
	uri := atURI(did, coll, rkey)
	rec := s.records[did][coll][rkey]
	if rec == nil || (q.Get("cid") != "" && q.Get("cid") != rec.cid) {
		xrpcError(w, http.StatusBadRequest, "RecordNotFound", "Could not locate record: "+uri)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"uri": uri, "cid": rec.cid, "value": rec.value})
}

func (s *Server) xrpcListRecords(w http.ResponseWriter, r *http.Request, _ *authInfo) {
	q := r.URL.Query()
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			xrpcError(w, http.StatusBadRequest, "InvalidRequest", "limit must be between 1 and 100")
			return
		}
		limit = n
	}
	reverse := q.Get("reverse") == "true"
	cursor := q.Get("cursor")

	s.mu.Lock()
	defer s.mu.Unlock()
	did, ok := s.repoLocked(q.Get("repo"))
	if !ok {
		xrpcError(w, http.StatusBadRequest, "RepoNotFound", "Could not find repo: "+q.Get("repo"))
		return
	}
	if s.repoRefusalLocked(w, did) {
		return
	}
	coll := q.Get("collection")
	recs := s.records[did][coll]
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	// Newest first (TIDs sort by time), oldest first with reverse=true.
	sort.Strings(keys)
	if !reverse {
		slices.Reverse(keys)
	}
	out := []map[string]any{}
	last := ""
	for _, k := range keys {
		if cursor != "" && ((!reverse && k >= cursor) || (reverse && k <= cursor)) {
			continue
		}
		if len(out) == limit {
			break
		}
		rec := recs[k]
		out = append(out, map[string]any{"uri": atURI(did, coll, k), "cid": rec.cid, "value": rec.value})
		last = k
	}
	resp := map[string]any{"records": out}
	if len(out) == limit {
		resp["cursor"] = last
	}
	writeJSON(w, http.StatusOK, resp)
}

// Record returns the stored value of a record by its at:// URI, in an
// account's repository or the lexicon repository did:web:<host>
// (at://<did>/<collection>/<rkey>; a handle works in place of the DID).
func (s *Server) Record(uri string) (json.RawMessage, bool) {
	rest, ok := strings.CutPrefix(uri, "at://")
	if !ok {
		return nil, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	did, ok := s.repoLocked(parts[0])
	if !ok {
		return nil, false
	}
	rec := s.records[did][parts[1]][parts[2]]
	if rec == nil {
		return nil, false
	}
	return append(json.RawMessage(nil), rec.value...), true
}
