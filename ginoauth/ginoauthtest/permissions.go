package ginoauthtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/bluesky-social/indigo/atproto/auth"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// This file holds AT Protocol granular permissions: the write check of the
// PDS, permission sets (lexicon documents named by include:<nsid> scopes)
// and their expansion into granular scopes at the token endpoint, and the
// scopes a test makes the user refuse. Scope strings are parsed with
// indigo's atproto/auth parser; expanded scopes are written the way the
// reference implementation (@atproto/oauth-scopes) writes them, so a client
// sees the same token scope here as from a production PDS.

// lexiconSchemaCollection is the collection of published lexicon documents;
// the record key is the NSID.
const lexiconSchemaCollection = "com.atproto.lexicon.schema"

// repoActions are the repo: actions in the reference's canonical order; a
// repo: scope without action means all three.
var repoActions = []string{"create", "update", "delete"}

// canWrite reports whether a granted scope allows action ("create",
// "update" or "delete") on collection, as the reference PDS decides it:
// transition:generic allows every repo write; otherwise a repo: scope must
// name the collection (or "*") and the action (no action listed means all).
// A scope value that does not parse grants nothing, like in the reference.
func canWrite(scope, collection, action string) bool {
	for _, v := range strings.Fields(scope) {
		if v == "transition:generic" {
			return true
		}
		if !strings.HasPrefix(v, "repo:") && !strings.HasPrefix(v, "repo?") {
			continue
		}
		p, err := auth.ParsePermissionString(v)
		if err != nil || p.Resource != "repo" {
			continue
		}
		if (slices.Contains(p.Collection, "*") || slices.Contains(p.Collection, collection)) &&
			(len(p.Action) == 0 || slices.Contains(p.Action, action)) {
			return true
		}
	}
	return false
}

// neededScope is the scope the reference names in its "Missing required
// scope" error for a repo write.
func neededScope(collection, action string) string {
	return formatRepo([]string{collection}, []string{action})
}

// scopeComponent percent-encodes a scope component like the reference
// (URLSearchParams, then ':', '/', '+', ',', '@' and '%' left as they are),
// so that "rpc:x?aud=did:web:api.example.com%23svc" comes out the same.
func scopeComponent(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-._*:/+,@%", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// formatScope writes resource[:positional][?params] with one positional
// value and params in the given order (the reference's schema order).
func formatScope(resource, positionalKey string, values [][2]string) string {
	var positional string
	var params []string
	n := 0
	for _, kv := range values {
		if kv[0] == positionalKey {
			n++
		}
	}
	for _, kv := range values {
		if kv[0] == positionalKey && n == 1 {
			positional = kv[1]
			continue
		}
		params = append(params, kv[0]+"="+scopeComponent(kv[1]))
	}
	out := resource
	if positional != "" {
		out += ":" + scopeComponent(positional)
	}
	if len(params) > 0 {
		out += "?" + strings.Join(params, "&")
	}
	return out
}

// sortedNSIDs dedupes and sorts several values, collapsing to "*" when one
// is a wildcard, as the reference normalizes collection and lxm lists.
func sortedNSIDs(vs []string) []string {
	if len(vs) <= 1 {
		return vs
	}
	if slices.Contains(vs, "*") {
		return []string{"*"}
	}
	out := slices.Clone(vs)
	slices.Sort(out)
	return slices.Compact(out)
}

// formatRepo writes a repo: scope in the reference's canonical form:
// repo:<collection> (or repo?collection=..&collection=..), then the actions
// in create, update, delete order, left out when all three are granted.
func formatRepo(collections, actions []string) string {
	var kv [][2]string
	for _, c := range sortedNSIDs(collections) {
		kv = append(kv, [2]string{"collection", c})
	}
	var acts []string
	for _, a := range repoActions {
		if len(actions) == 0 || slices.Contains(actions, a) {
			acts = append(acts, a)
		}
	}
	if len(acts) < len(repoActions) {
		for _, a := range acts {
			kv = append(kv, [2]string{"action", a})
		}
	}
	return formatScope("repo", "collection", kv)
}

// formatRPC writes an rpc: scope in the reference's canonical form.
func formatRPC(lxms []string, aud string) string {
	var kv [][2]string
	for _, l := range sortedNSIDs(lxms) {
		kv = append(kv, [2]string{"lxm", l})
	}
	kv = append(kv, [2]string{"aud", aud})
	return formatScope("rpc", "lxm", kv)
}

// setPermission is one permission of a permission-set lexicon, with the
// JSON of the lexicon language (indigo's lexicon.SchemaPermission has the
// same shape; that package is not used because it needs modules this one
// does not require).
type setPermission struct {
	Type       string   `json:"type"` // "permission"
	Resource   string   `json:"resource"`
	Collection []string `json:"collection,omitempty"`
	Action     []string `json:"action,omitempty"`
	LXM        []string `json:"lxm,omitempty"`
	Audience   string   `json:"aud,omitempty"`
	InheritAud bool     `json:"inheritAud,omitempty"`
}

// PublishPermissionSet publishes, or replaces, the permission set nsid: a
// lexicon document {"lexicon":1,"id":nsid,"defs":{"main":{"type":
// "permission-set","permissions":[...]}}} with one permission per scope
// string. A client that requests include:<nsid> is then granted the set's
// permissions; see the package documentation for how they are expanded.
//
// A permission is a repo: scope (repo:com.example.note?action=create; a
// collection, not "*") or an rpc: scope. An rpc: scope without aud
// (rpc:com.example.getNotes) is written with inheritAud: it takes the aud of
// the include: scope that names the set; otherwise its aud must be "*"
// (permission sets cannot name a service). Other resources are refused, as
// the lexicon language does not allow them in permission sets. Scope strings
// are parsed with indigo's atproto/auth parser. Permissions outside the
// set's NSID authority are accepted here, as on the network, and dropped at
// expansion, as the reference server does.
//
// The document is stored as the record com.atproto.lexicon.schema/<nsid> in
// the repository of did:web:<host>, the server's own lexicon authority (not
// an account: it cannot sign in and is not listed by [Server.Accounts]). It
// is served without authentication by com.atproto.repo.getRecord and
// listRecords, the DID resolves in [Server.Directory] (and its DID document
// is served at https://<host>/.well-known/did.json), and the directory's
// ResolveNSID maps nsid to it. The next authorization_code or refresh_token
// grant of every session that includes the set uses the new version.
func (s *Server) PublishPermissionSet(nsid string, permissions ...string) error {
	id, err := syntax.ParseNSID(nsid)
	if err != nil {
		return fmt.Errorf("ginoauthtest: PublishPermissionSet: %w", err)
	}
	perms := make([]setPermission, 0, len(permissions))
	for _, p := range permissions {
		sp, err := parseSetPermission(p)
		if err != nil {
			return fmt.Errorf("ginoauthtest: PublishPermissionSet %s: permission %q: %w", nsid, p, err)
		}
		perms = append(perms, sp)
	}
	raw, err := json.Marshal(map[string]any{
		"$type":   lexiconSchemaCollection,
		"lexicon": 1,
		"id":      id.String(),
		"defs": map[string]any{
			"main": map[string]any{"type": "permission-set", "permissions": perms},
		},
	})
	if err != nil {
		return fmt.Errorf("ginoauthtest: PublishPermissionSet: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.permSets[id] = perms
	s.putLocked(s.lexDID, lexiconSchemaCollection, id.String(), raw)
	s.log.Info("permission set published", "nsid", id, "permissions", len(perms))
	return nil
}

// parseSetPermission turns a scope string into a permission of a
// permission set, with the checks of the lexicon language (those of
// indigo's lexicon.SchemaPermission.CheckSchema).
func parseSetPermission(scope string) (setPermission, error) {
	g, err := auth.ParseGenericScope(scope)
	if err != nil {
		return setPermission{}, err
	}
	inherit := g.Resource == "rpc" && !g.Params.Has("aud")
	if inherit {
		// indigo's parser requires an aud on rpc: scopes; a set's rpc
		// permission may leave it to the include: scope instead. Parse
		// with a placeholder service and drop it.
		sep := "?"
		if strings.Contains(scope, "?") {
			sep = "&"
		}
		scope += sep + "aud=did:web:placeholder.invalid%23svc"
	}
	p, err := auth.ParsePermissionString(scope)
	if err != nil {
		return setPermission{}, err
	}
	sp := setPermission{Type: "permission", Resource: p.Resource}
	switch p.Resource {
	case "repo":
		if slices.Contains(p.Collection, "*") {
			return sp, errors.New("a permission set cannot grant every collection (repo:*)")
		}
		sp.Collection, sp.Action = p.Collection, p.Action
	case "rpc":
		sp.LXM = p.Endpoint
		switch {
		case inherit:
			sp.InheritAud = true
		case p.Audience == "*":
			sp.Audience = "*"
		default:
			return sp, errors.New("an rpc permission in a permission set has aud=* or no aud (inherited from the include: scope), not a service")
		}
	default:
		return sp, errors.New("a permission set holds only repo: and rpc: permissions")
	}
	return sp, nil
}

// parseInclude parses an include:<nsid>[?aud=...] scope, or returns nil for
// any other value (an include: that does not parse is passed through as an
// ordinary scope value, like the reference does).
func parseInclude(v string) *auth.Permission {
	if !strings.HasPrefix(v, "include:") && !strings.HasPrefix(v, "include?") {
		return nil
	}
	p, err := auth.ParsePermissionString(v)
	if err != nil || p.Resource != "include" {
		return nil
	}
	return p
}

// underAuthority reports whether nsid belongs to the namespace of the
// permission set setNSID: everything up to and including its last dot is
// the same ("com.example.authFull" covers "com.example.note" and
// "com.example.sub.thing"). "*" never does. This is the reference's rule,
// which keeps a set from granting access to another authority's data.
func underAuthority(setNSID string, nsid string) bool {
	dot := strings.LastIndexByte(setNSID, '.')
	return nsid != "*" && dot >= 0 && len(nsid) > dot+1 && nsid[:dot+1] == setNSID[:dot+1]
}

// includeScopes expands one include: scope with the permission set perms.
func includeScopes(inc *auth.Permission, perms []setPermission) []string {
	allUnder := func(vs []string) bool {
		for _, v := range vs {
			if !underAuthority(inc.NSID, v) {
				return false
			}
		}
		return len(vs) > 0
	}
	var out []string
	for _, p := range perms {
		switch p.Resource {
		case "repo":
			if allUnder(p.Collection) {
				out = append(out, formatRepo(p.Collection, p.Action))
			}
		case "rpc":
			aud := p.Audience
			if p.InheritAud && aud == "" {
				aud = inc.Audience // no aud on the include: drops the permission
			} else if aud != "*" {
				continue // a set cannot name a service itself
			}
			if aud == "" || (aud == "*" && slices.Contains(p.LXM, "*")) || !allUnder(p.LXM) {
				continue
			}
			out = append(out, formatRPC(p.LXM, aud))
		}
	}
	return out
}

// expandScopeLocked is the scope a token gets from an approved scope: every
// include:<nsid> is replaced by the granular scopes of the set as published
// now, followed by the other scope values (the reference's order), and
// scopes the user refused are dropped.
func (s *Server) expandScopeLocked(scope string, denied map[string]bool) string {
	var included, others []string
	for _, v := range strings.Fields(scope) {
		if inc := parseInclude(v); inc != nil {
			// A set is checked at PAR and never unpublished, so it is
			// always found.
			included = append(included, includeScopes(inc, s.permSets[syntax.NSID(inc.NSID)])...)
			continue
		}
		others = append(others, v)
	}
	out := make([]string, 0, len(included)+len(others))
	for _, v := range append(included, others...) {
		if !denied[v] {
			out = append(out, v)
		}
	}
	return strings.Join(out, " ")
}

// unknownIncludeLocked returns the first include: scope whose permission
// set is not published, or "".
func (s *Server) unknownIncludeLocked(scope string) string {
	for _, v := range strings.Fields(scope) {
		if inc := parseInclude(v); inc != nil {
			if _, ok := s.permSets[syntax.NSID(inc.NSID)]; !ok {
				return inc.NSID
			}
		}
	}
	return ""
}

// DenyScopes makes the user grant less than the client asks for: from now
// on, every approval (consent page, [Server.Consent] or auto-approve) grants
// the requested scope minus these exact scope strings, and leaves them out
// of the expansion of permission sets too (compare with the canonical form
// the token response shows, such as repo:com.example.note?action=create).
// atproto is never denied. Each call replaces the list; DenyScopes() with no
// arguments clears it. Approvals made earlier keep what they granted.
func (s *Server) DenyScopes(scopes ...string) {
	denied := map[string]bool{}
	for _, sc := range scopes {
		for _, v := range strings.Fields(sc) {
			if v != "atproto" {
				denied[v] = true
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied = denied
}

// approvedScopeLocked applies DenyScopes to a requested scope and returns
// the approved scope and a snapshot of the denied values for later
// expansions.
func (s *Server) approvedScopeLocked(requested string) (string, map[string]bool) {
	denied := make(map[string]bool, len(s.denied))
	var out []string
	for _, v := range strings.Fields(requested) {
		if !s.denied[v] {
			out = append(out, v)
		}
	}
	for v := range s.denied {
		denied[v] = true
	}
	return strings.Join(out, " "), denied
}

// handleDIDDocument serves the DID document of did:web:<host>, the
// repository that holds published permission sets, so that a did:web
// resolver using [Server.HTTPClient] finds its PDS too.
func (s *Server) handleDIDDocument(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@context": []string{"https://www.w3.org/ns/did/v1"},
		"id":       s.lexDID.String(),
		"service": []map[string]string{{
			"id":              "#atproto_pds",
			"type":            "AtprotoPersonalDataServer",
			"serviceEndpoint": s.issuer,
		}},
	})
}
