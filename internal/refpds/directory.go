package refpds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Directory returns an identity directory that resolves as the network
// does, against the running servers, with no cache: a DID through the
// local PLC directory the PDS writes to (PLCURL), a handle through the
// PDS's own handle resolution (com.atproto.identity.resolveHandle, which
// answers for the handles it hosts), each identity's handle verified both
// ways (handle.invalid when it does not verify). A handle changed with
// com.atproto.identity.updateHandle, or an account deactivated, is seen at
// the next lookup.
func (e *Env) Directory() identity.Directory {
	return &liveDirectory{e: e, plc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}}
}

type liveDirectory struct {
	e   *Env
	plc *http.Client // to the PLC directory on loopback
}

func (d *liveDirectory) LookupHandle(ctx context.Context, h syntax.Handle) (*identity.Identity, error) {
	did, err := d.resolveHandle(ctx, h)
	if err != nil {
		return nil, err
	}
	ident, err := d.LookupDID(ctx, did)
	if err != nil {
		return nil, err
	}
	if ident.Handle != h.Normalize() {
		return nil, fmt.Errorf("%w: %s resolves to %s, which does not claim it", identity.ErrHandleMismatch, h, did)
	}
	return ident, nil
}

func (d *liveDirectory) LookupDID(ctx context.Context, did syntax.DID) (*identity.Identity, error) {
	if did.Method() != "plc" {
		return nil, fmt.Errorf("%w: only did:plc is served here: %s", identity.ErrDIDNotFound, did)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(d.e.PLCURL, "/")+"/"+url.PathEscape(did.String()), nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.plc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: PLC: %w", identity.ErrDIDResolutionFailed, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return nil, fmt.Errorf("%w: %s", identity.ErrDIDNotFound, did)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: PLC answered HTTP %d", identity.ErrDIDResolutionFailed, resp.StatusCode)
	}
	var doc identity.DIDDocument
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %w", identity.ErrDIDResolutionFailed, err)
	}
	ident := identity.ParseIdentity(&doc)
	ident.Handle = syntax.HandleInvalid
	if h, err := ident.DeclaredHandle(); err == nil {
		back, err := d.resolveHandle(ctx, h)
		switch {
		case err == nil && back == did:
			ident.Handle = h
		case err != nil && !errors.Is(err, identity.ErrHandleNotFound):
			return nil, err
		}
	}
	return &ident, nil
}

// resolveHandle asks the PDS which DID holds h.
func (d *liveDirectory) resolveHandle(ctx context.Context, h syntax.Handle) (syntax.DID, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		d.e.Issuer+"/xrpc/com.atproto.identity.resolveHandle?handle="+url.QueryEscape(h.Normalize().String()), nil)
	if err != nil {
		return "", err
	}
	resp, err := d.e.HTTPClient().Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: %w", identity.ErrHandleResolutionFailed, err)
	}
	defer resp.Body.Close()
	var out struct {
		DID   string `json:"did"`
		Error string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out)
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode == http.StatusBadRequest {
			return "", fmt.Errorf("%w: %s (%s)", identity.ErrHandleNotFound, h, out.Error)
		}
		return "", fmt.Errorf("%w: HTTP %d", identity.ErrHandleResolutionFailed, resp.StatusCode)
	}
	return syntax.ParseDID(out.DID)
}

func (d *liveDirectory) Lookup(ctx context.Context, atid syntax.AtIdentifier) (*identity.Identity, error) {
	if h, err := atid.AsHandle(); err == nil {
		return d.LookupHandle(ctx, h)
	}
	did, err := atid.AsDID()
	if err != nil {
		return nil, err
	}
	return d.LookupDID(ctx, did)
}

// Purge does nothing: the directory keeps no cache.
func (d *liveDirectory) Purge(context.Context, syntax.AtIdentifier) error { return nil }

// PasswordCall calls the XRPC procedure nsid (POST, JSON body in) as the
// account, with a legacy password session (com.atproto.server.createSession),
// as the account's owner would from another app: to change the account
// under a logged-in app (updateHandle, deactivateAccount). out may be nil.
func (e *Env) PasswordCall(ctx context.Context, a Account, nsid string, in, out any) error {
	var sess struct {
		AccessJwt string `json:"accessJwt"`
	}
	if err := e.xrpcPost(ctx, "com.atproto.server.createSession", "", map[string]string{"identifier": a.DID.String(), "password": a.Password}, &sess); err != nil {
		return err
	}
	return e.xrpcPost(ctx, nsid, sess.AccessJwt, in, out)
}

func (e *Env) xrpcPost(ctx context.Context, nsid, bearer string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.Issuer+"/xrpc/"+nsid, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := e.HTTPClient().Do(req)
	if err != nil {
		return fmt.Errorf("refpds: %s: %w", nsid, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Message string }
		_ = json.Unmarshal(raw, &e)
		return fmt.Errorf("refpds: %s: HTTP %d %s %s", nsid, resp.StatusCode, e.Error, e.Message) // never the body: it may hold tokens
	}
	if out != nil && len(raw) > 0 {
		return json.Unmarshal(raw, out)
	}
	return nil
}
