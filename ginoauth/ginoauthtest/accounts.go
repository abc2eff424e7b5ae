package ginoauthtest

import (
	"context"
	"fmt"
	"strings"

	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Account is an account on the test PDS.
type Account struct {
	// DID is did:plc:<24 base32 characters>, generated when empty at
	// CreateAccount; set it for stable fixtures.
	DID syntax.DID
	// Handle is the account's handle, normalised to lower case. A handle
	// without a dot gets the suffix ".test" ("alice" becomes "alice.test").
	Handle syntax.Handle
	// DisplayName is shown on the consent page and by
	// app.bsky.actor.getProfile.
	DisplayName string

	// What happened to it since (identity.go).
	pds        string // the PDS its DID document names, when not this server's own
	status     string // "" (active), statusDeactivated, statusTakendown, statusDeleted
	handleGone bool   // its handle no longer resolves (UnpublishHandle)
}

// CreateAccount creates the account a describes (only Handle is required)
// and publishes it in [Server.Directory]: its DID resolves to the handle and
// to the PDS https://<host>, and the handle resolves to the DID. It returns
// the account as created.
//
// CreateAccount panics on an invalid handle or DID, or on a handle or DID
// that is already taken (did:web:<host> is taken by the server itself, see
// [Server.PublishPermissionSet]): it is a test fixture helper, and those are
// bugs in the test.
func (s *Server) CreateAccount(a Account) Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	created, err := s.createAccountLocked(a)
	if err != nil {
		panic("ginoauthtest: CreateAccount: " + err.Error())
	}
	return created
}

// createAccountLocked is CreateAccount returning an error, shared with
// sign-up on the consent page (prompt=create), where a bad handle is the
// user's typo rather than a bug in the test.
func (s *Server) createAccountLocked(a Account) (Account, error) {
	handle := a.Handle.String()
	if !strings.Contains(handle, ".") {
		handle += ".test"
	}
	h, err := syntax.ParseHandle(handle)
	if err != nil {
		return Account{}, err
	}
	a.Handle = h.Normalize()
	if a.DID == "" {
		// did:plc identifiers are 24 characters of lower-case base32.
		a.DID = syntax.DID("did:plc:" + lowerBase32.EncodeToString(randomBytes(15)))
	}
	if _, err := syntax.ParseDID(a.DID.String()); err != nil {
		return Account{}, err
	}
	if _, ok := s.handles[a.Handle]; ok {
		return Account{}, fmt.Errorf("handle %s already exists", a.Handle)
	}
	if _, ok := s.accounts[a.DID]; ok || a.DID == s.lexDID {
		return Account{}, fmt.Errorf("DID %s already exists", a.DID)
	}
	acct := a
	s.accounts[a.DID] = &acct
	s.handles[a.Handle] = a.DID
	s.accountList = append(s.accountList, a.DID)
	s.log.Info("account created", "did", a.DID, "handle", a.Handle)
	return a, nil
}

// Account looks an account up by handle or DID.
func (s *Server) Account(handleOrDID string) (Account, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupAccountLocked(handleOrDID)
	if a == nil {
		return Account{}, false
	}
	return *a, true
}

// Accounts lists all accounts in creation order.
func (s *Server) Accounts() []Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Account, 0, len(s.accountList))
	for _, did := range s.accountList {
		out = append(out, *s.accounts[did])
	}
	return out
}

// lookupAccountLocked accepts a handle (with or without a leading "@", any
// case) or a DID.
func (s *Server) lookupAccountLocked(id string) *Account {
	id = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(id), "@"))
	if id == "" {
		return nil
	}
	if strings.HasPrefix(id, "did:") {
		return s.accounts[syntax.DID(id)]
	}
	did, ok := s.handles[syntax.Handle(strings.ToLower(id))]
	if !ok {
		return nil
	}
	return s.accounts[did]
}

// Directory returns an identity directory that knows exactly the server's
// accounts: each DID resolves to its handle and to the atproto_pds service
// https://<host>, and each handle to its DID. Set it as the Dir of indigo's
// oauth.ClientApp. Accounts created later are visible at once.
//
// It also knows the server's own lexicon repository, did:web:<host> (no
// handle: handle.invalid), and implements
//
//	ResolveNSID(ctx context.Context, nsid syntax.NSID) (syntax.DID, error)
//
// with the signature of indigo's identity.BaseDirectory: the NSID of a set
// published with [Server.PublishPermissionSet] resolves to did:web:<host>,
// any other NSID fails with identity.ErrNSIDNotFound. On the network that
// step is a DNS TXT lookup of _lexicon.<authority>, which a test cannot
// make.
//
// (It is a small directory of its own rather than identity.MockDirectory,
// whose Lookup takes its read lock twice and can deadlock when an account
// is added during a concurrent lookup.)
func (s *Server) Directory() identity.Directory { return s.dir }

type directory struct{ s *Server }

func (d *directory) identity(did syntax.DID, h syntax.Handle) *identity.Identity {
	pds := d.s.issuer
	if a := d.s.accounts[did]; a != nil {
		pds = d.s.pdsURLLocked(a)
	}
	ident := &identity.Identity{
		DID:    did,
		Handle: h,
		Services: map[string]identity.ServiceEndpoint{
			"atproto_pds": {Type: "AtprotoPersonalDataServer", URL: pds},
		},
		Keys: map[string]identity.VerificationMethod{},
	}
	if h != syntax.HandleInvalid {
		ident.AlsoKnownAs = []string{"at://" + h.String()}
	}
	return ident
}

func (d *directory) LookupHandle(ctx context.Context, h syntax.Handle) (*identity.Identity, error) {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	did, ok := d.s.handles[h.Normalize()]
	if !ok || d.s.accounts[did].handleGone {
		return nil, fmt.Errorf("%w: %s", identity.ErrHandleNotFound, h)
	}
	return d.identity(did, d.s.accounts[did].Handle), nil
}

func (d *directory) LookupDID(ctx context.Context, did syntax.DID) (*identity.Identity, error) {
	if did == d.s.lexDID {
		return d.identity(did, syntax.HandleInvalid), nil
	}
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	a, ok := d.s.accounts[did]
	if !ok || a.status == statusDeleted {
		return nil, fmt.Errorf("%w: %s", identity.ErrDIDNotFound, did)
	}
	return d.identity(a.DID, a.Handle), nil
}

func (d *directory) Lookup(ctx context.Context, atid syntax.AtIdentifier) (*identity.Identity, error) {
	if h, err := atid.AsHandle(); err == nil {
		return d.LookupHandle(ctx, h)
	}
	if did, err := atid.AsDID(); err == nil {
		return d.LookupDID(ctx, did)
	}
	return nil, fmt.Errorf("at-identifier neither a handle nor a DID: %s", atid)
}

func (d *directory) Purge(ctx context.Context, atid syntax.AtIdentifier) error { return nil }

// ResolveNSID resolves the NSID of a published permission set to the
// server's lexicon repository; see [Server.Directory].
func (d *directory) ResolveNSID(ctx context.Context, nsid syntax.NSID) (syntax.DID, error) {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	if _, ok := d.s.permSets[nsid]; !ok {
		return "", fmt.Errorf("%w: %s", identity.ErrNSIDNotFound, nsid)
	}
	return d.s.lexDID, nil
}
