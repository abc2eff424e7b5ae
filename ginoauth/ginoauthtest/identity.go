package ginoauthtest

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// What happens to an account at the network, as the reference PDS
// (@atproto/pds) does it, for tests of apps that must follow: handle
// changes, moves to another PDS, deactivation, takedown, deletion.
//
// The reference PDS's answers, which this server gives too:
//
//   - a deactivated account's writes (createRecord, putRecord,
//     deleteRecord) are answered 401 {"error":"AccountDeactivated"}; reads
//     of its repository 400 RepoDeactivated; com.atproto.sync.getRepoStatus
//     says {"active":false,"status":"deactivated"}; its OAuth sessions
//     live on (it may be reactivated);
//   - a taken down account's authenticated calls are answered 401
//     AccountTakedown, reads of its repository 400 RepoTakendown, its
//     status is "takendown", and its refresh tokens are revoked;
//   - a deleted account's authenticated calls are answered 403
//     AccountNotFound (its access tokens still verify until they expire),
//     getRepoStatus and reads 400 RepoNotFound, its refresh tokens are
//     gone, and its DID no longer resolves in [Server.Directory] (as a
//     tombstoned did:plc).

// Account statuses at the PDS, as com.atproto.sync.getRepoStatus names
// them ("" is active).
const (
	statusDeactivated = "deactivated"
	statusTakendown   = "takendown"
	statusDeleted     = "deleted"
)

// UpdateHandle changes an account's handle (handle or DID) to handle, as
// com.atproto.identity.updateHandle does: its DID document claims the new
// handle, which resolves to it, and the old one no longer resolves. A
// handle without a dot gets the suffix ".test".
func (s *Server) UpdateHandle(account, handle string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupAccountLocked(account)
	if a == nil {
		return fmt.Errorf("ginoauthtest: no account %q", account)
	}
	if !strings.Contains(handle, ".") {
		handle += ".test"
	}
	h, err := syntax.ParseHandle(handle)
	if err != nil {
		return err
	}
	h = h.Normalize()
	if did, taken := s.handles[h]; taken && did != a.DID {
		return fmt.Errorf("ginoauthtest: handle %s is taken", h)
	}
	delete(s.handles, a.Handle)
	a.Handle = h
	a.handleGone = false
	s.handles[h] = a.DID
	s.log.Info("handle updated", "did", a.DID, "handle", h)
	return nil
}

// UnpublishHandle makes an account's handle stop resolving (its DNS record
// or well-known document removed) while its DID document still claims it:
// the handle no longer verifies, and clients show handle.invalid.
func (s *Server) UnpublishHandle(account string) error {
	return s.setAccount(account, func(a *Account) { a.handleGone = true })
}

// DeactivateAccount deactivates an account, as
// com.atproto.server.deactivateAccount does; ActivateAccount undoes it.
func (s *Server) DeactivateAccount(account string) error {
	return s.setAccount(account, func(a *Account) { a.status = statusDeactivated })
}

// ActivateAccount reactivates a deactivated account
// (com.atproto.server.activateAccount).
func (s *Server) ActivateAccount(account string) error {
	return s.setAccount(account, func(a *Account) { a.status = "" })
}

// TakeDownAccount takes an account down, as the PDS's administrators can
// (com.atproto.admin.updateSubjectStatus): its refresh tokens stop working
// and its calls are answered AccountTakedown.
func (s *Server) TakeDownAccount(account string) error {
	return s.setAccount(account, func(a *Account) { a.status = statusTakendown })
}

// DeleteAccount deletes an account (com.atproto.server.deleteAccount): its
// DID stops resolving, its refresh tokens stop working, its calls are
// answered AccountNotFound. The account stays known to
// [Server.Account] with nothing to log in to.
func (s *Server) DeleteAccount(account string) error {
	return s.setAccount(account, func(a *Account) {
		a.status = statusDeleted
		delete(s.handles, a.Handle)
	})
}

// MoveAccount moves an account to the PDS at pdsURL (https://host): its DID
// document names that PDS from now on. When pdsURL is one of this
// server's own PDS hosts ([Server.AddPDSHost]), the account stays with
// this authorization server, like a move between the PDS hosts behind one
// entryway, and its OAuth sessions go on there. Otherwise the account went
// to another server (create it there with the same DID): here it is
// deactivated, as the migration flow leaves it.
func (s *Server) MoveAccount(account, pdsURL string) error {
	pdsURL = strings.TrimRight(pdsURL, "/")
	if !strings.HasPrefix(pdsURL, "https://") || strings.ContainsAny(pdsURL[len("https://"):], "/?#@") {
		return fmt.Errorf("ginoauthtest: MoveAccount: %q is not https://host", pdsURL)
	}
	host := strings.ToLower(strings.TrimPrefix(pdsURL, "https://"))
	return s.setAccount(account, func(a *Account) {
		a.pds = pdsURL
		if host == s.host {
			a.pds = ""
		}
		if host != s.host && !s.pdsHosts[host] {
			a.status = statusDeactivated
		} else if a.status == statusDeactivated {
			a.status = ""
		}
	})
}

// AddPDSHost makes the server answer as a PDS at https://host too,
// protected by this same authorization server (its protected resource
// metadata names this issuer), like the many PDS hosts behind the
// reference network's entryway. Its HTTPClient reaches it.
func (s *Server) AddPDSHost(host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pdsHosts[strings.ToLower(host)] = true
}

// PDSRequests counts the authenticated XRPC requests the PDS answered at
// host (this server's own host, or one added with [Server.AddPDSHost]),
// whatever the answer: for checking where an app sends its tokens.
func (s *Server) PDSRequests(host string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pdsCalls[strings.ToLower(host)]
}

func (s *Server) setAccount(account string, f func(*Account)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupAccountLocked(account)
	if a == nil {
		return fmt.Errorf("ginoauthtest: no account %q", account)
	}
	f(a)
	s.log.Info("account changed", "did", a.DID, "handle", a.Handle, "status", a.status, "pds", a.pds)
	return nil
}

// pdsURLLocked is the PDS the account's DID document names.
func (s *Server) pdsURLLocked(a *Account) string {
	if a.pds != "" {
		return a.pds
	}
	return s.issuer
}

// accountRefusal answers an authenticated call of an account that cannot
// make it, as the reference PDS does; write says whether the call writes
// (a deactivated account may still read its session). It reports whether
// it answered.
func (s *Server) accountRefusal(w http.ResponseWriter, did syntax.DID, write bool) bool {
	s.mu.Lock()
	a := s.accounts[did]
	status := ""
	if a != nil {
		status = a.status
	}
	s.mu.Unlock()
	switch {
	case a == nil || status == statusDeleted:
		xrpcError(w, http.StatusForbidden, "AccountNotFound", "Account not found")
	case status == statusTakendown:
		xrpcError(w, http.StatusUnauthorized, "AccountTakedown", "Account has been taken down")
	case status == statusDeactivated && write:
		xrpcError(w, http.StatusUnauthorized, "AccountDeactivated", "Account is deactivated")
	default:
		return false
	}
	return true
}

// repoRefusalLocked answers a read of an account's repository that the
// PDS does not serve (RepoNotFound, RepoTakendown, RepoDeactivated), and
// reports whether it answered.
func (s *Server) repoRefusalLocked(w http.ResponseWriter, did syntax.DID) bool {
	status := ""
	if a := s.accounts[did]; a != nil {
		status = a.status
	}
	switch status {
	case statusDeleted:
		xrpcError(w, http.StatusBadRequest, "RepoNotFound", "Could not find repo for DID: "+did.String())
	case statusTakendown:
		xrpcError(w, http.StatusBadRequest, "RepoTakendown", "Repo has been takendown: "+did.String())
	case statusDeactivated:
		xrpcError(w, http.StatusBadRequest, "RepoDeactivated", "Repo has been deactivated: "+did.String())
	default:
		return false
	}
	return true
}

// xrpcGetRepoStatus is com.atproto.sync.getRepoStatus: public.
func (s *Server) xrpcGetRepoStatus(w http.ResponseWriter, r *http.Request, _ *authInfo) {
	did, err := syntax.ParseDID(r.URL.Query().Get("did"))
	if err != nil {
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", "did must be a DID")
		return
	}
	s.mu.Lock()
	s.stats.RepoStatusCalls++
	a := s.accounts[did]
	status := ""
	if a != nil {
		status = a.status
	}
	s.mu.Unlock()
	if a == nil || status == statusDeleted {
		xrpcError(w, http.StatusBadRequest, "RepoNotFound", "Could not find repo for DID: "+did.String())
		return
	}
	out := map[string]any{"did": did.String(), "active": status == ""}
	if status != "" {
		out["status"] = status
	} else {
		out["rev"] = s.tid.Next().String()
	}
	writeJSON(w, http.StatusOK, out)
}
