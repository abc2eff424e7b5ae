package ginoauth

import (
	"fmt"
	"sync"
	"time"
)

// This file is what the Manager tells the app about: lifecycle events for
// audit logs and app logic, and measurements for metrics.

// EventType names a lifecycle event.
type EventType string

// Lifecycle events.
const (
	EventLogin        EventType = "login"         // a device session started (web, or a native app's code redeemed)
	EventLogout       EventType = "logout"        // the user logged out on that device
	EventSessionEnded EventType = "session_ended" // a session ended for another reason (Event.Reason)
	// EventIdentityChanged: a background check found the account's handle,
	// PDS or status changed (Event.Handle, PreviousHandle, PDS,
	// PreviousPDS, AccountStatus); its sessions follow. One event per
	// account, not per session.
	EventIdentityChanged EventType = "identity_changed"

	// The token life of a grant (one login's OAuth session), reported by
	// the instance that saw it. Session is the device session using the
	// grant ("" for a grant kept only for BackgroundAccess).
	EventTokensRefreshed EventType = "tokens_refreshed" // the OAuth client refreshed the grant's tokens (Scopes: granted now)
	EventScopesChanged   EventType = "scopes_changed"   // a refresh changed the granted scopes (PreviousScopes -> Scopes); follows its EventTokensRefreshed
	EventGrantRevoked    EventType = "grant_revoked"    // the authorization server ended the grant before its limits (revoked by the user or the server); once per grant, after its device session ended with EndRevokedAtServer
)

// EndReason says why a device session ended, in Event.Reason.
type EndReason string

// Reasons a session ended. Every way a session ends goes through one place
// in the library, which deletes its records, updates the account's index,
// revokes its tokens where they still live, and emits one event with one of
// these.
const (
	EndLogout         EndReason = "logout"          // the user logged out on that device
	EndExpired        EndReason = "expired"         // unused for its lifetime (SessionTTL), or past MaxSessionAge
	EndGrantExpired   EndReason = "grant_expired"   // its grant reached the authorization server's limit
	EndIdle           EndReason = "idle"            // no request for Config.IdleTimeout
	EndRefreshRefused EndReason = "refresh_refused" // the authorization server refused a token refresh, and the grant's limits are unknown (see EndRevokedAtServer, EndGrantExpired)
	EndRevoked        EndReason = "revoked"         // the OAuth client no longer had its OAuth session (deleted on the app's side, or its storage lost it)
	// EndRevokedAtServer: the authorization server ended the grant before
	// its limits (the user revoked the app in their account's settings, or
	// the server revoked it): the background liveness check
	// (Config.LivenessCheckEvery), or a PDS call answered 401 and the
	// refresh that followed refused. Unlike EndRevoked, the server said so;
	// unlike EndRefreshRefused, the grant had not reached its known limits.
	EndRevokedAtServer EndReason = "revoked_at_server"
	EndByUser          EndReason = "ended_by_user"    // the user ended it from another device
	EndEverywhere      EndReason = "ended_everywhere" // all sessions of the account were ended
	EndReplaced        EndReason = "replaced"         // a new login on the same device (or a step-up) replaced it
	EndKeyRetired      EndReason = "key_retired"      // the confidential client key its login is bound to was retired
	EndCodeReplayed    EndReason = "code_replayed"    // the native app's one-time code was presented again: it may be stolen
	// The account changed at the network (Config.IdentityCheckInterval).
	EndAccountMoved       EndReason = "account_moved"       // it moved to a PDS another authorization server protects: log in again there
	EndAccountDeactivated EndReason = "account_deactivated" // its owner deactivated it (unless Config.KeepDeactivatedSessions)
	EndAccountTakenDown   EndReason = "account_taken_down"  // its PDS took it down (or suspended it)
	EndAccountDeleted     EndReason = "account_deleted"     // it was deleted: its DID or its repository is gone
)

// Event is one lifecycle event. It never holds tokens, codes or session
// ids: Session is the same opaque reference the device list shows.
type Event struct {
	Type    EventType
	Reason  EndReason // for EventSessionEnded (and EndLogout for EventLogout)
	DID     string
	Handle  string
	Session string // opaque reference of the device session, as in SessionInfo.Ref
	Kind    string // "web" or "mobile"
	Time    time.Time

	// For EventIdentityChanged: the handle (in Handle) and PDS now and
	// before ("" when unchanged), and the account's status at its PDS (""
	// for active; "deactivated" or "suspended" when the sessions are kept,
	// see Config.KeepDeactivatedSessions).
	PreviousHandle string
	PDS            string
	PreviousPDS    string
	AccountStatus  string
	// For EventTokensRefreshed and EventScopesChanged: the scopes granted
	// now and before the refresh. Scope strings only, never tokens.
	Scopes, PreviousScopes []string
}

// maxQueuedEvents bounds the events waiting for a slow hook; past it, new
// events are dropped (and logged), so a hook can never hold up a login.
const maxQueuedEvents = 1024

// hooks delivers events to Config.OnEvent on a goroutine of its own.
type hooks struct {
	fn   func(Event)
	log  func(msg string, args ...any)
	once sync.Once
	ch   chan Event
	done chan struct{}
}

// emit queues e for the hook, never blocking.
func (h *hooks) emit(m *Manager, e Event) {
	if h.fn == nil {
		return
	}
	h.once.Do(func() {
		h.ch = make(chan Event, maxQueuedEvents)
		h.done = make(chan struct{})
		m.bg.run(func() { h.deliver(m) })
	})
	select {
	case h.ch <- e:
	default:
		h.log("event hook is too slow; event dropped", "type", string(e.Type), "reason", string(e.Reason))
	}
}

// deliver runs the hook for each event until the Manager closes, then for
// the events still queued.
func (h *hooks) deliver(m *Manager) {
	call := func(e Event) {
		defer func() {
			if r := recover(); r != nil {
				h.log("event hook panicked", "type", string(e.Type), "panic", fmt.Sprint(r))
			}
		}()
		h.fn(e)
	}
	for {
		select {
		case e := <-h.ch:
			call(e)
		case <-m.bg.stopping():
			for {
				select {
				case e := <-h.ch:
					call(e)
				default:
					return
				}
			}
		}
	}
}

// Metrics receives the Manager's measurements; set Config.Metrics. The
// ginoauth/prommetrics package implements it for Prometheus (without
// importing this package: the methods take plain strings). Methods must be
// quick and safe for concurrent use. Outcomes and codes are ErrorCode
// values ("ok" for success).
type Metrics interface {
	// LoginStarted counts a login sent to an authorization server ("web",
	// "mobile" or "step_up").
	LoginStarted(kind string)
	// LoginFinished records a callback: code "ok" or the failure's code,
	// and how long the callback took.
	LoginFinished(code string, took time.Duration)
	// SessionChecked records a session check (cookie or bearer) and its
	// outcome: "ok", "anonymous", or the code of a request without a usable
	// session; storage failures are CodeStorageUnavailable.
	SessionChecked(outcome string, took time.Duration)
	// StorageFailed counts a storage failure by operation.
	StorageFailed(op string)
}

// A Metrics may also have KeepAliveRan(outcome string), found by type
// assertion: it then counts keep-alive runs (Config.KeepAlive) by outcome:
// "refreshed", "not_due", "gone", "refused", "network" or "storage". And
// LivenessChecked(outcome string): liveness checks (Config.LivenessCheckEvery)
// by outcome: "live", "ended", "gone" or "unknown".

// nopMetrics is the default Metrics.
type nopMetrics struct{}

func (nopMetrics) LoginStarted(string)                  {}
func (nopMetrics) LoginFinished(string, time.Duration)  {}
func (nopMetrics) SessionChecked(string, time.Duration) {}
func (nopMetrics) StorageFailed(string)                 {}
