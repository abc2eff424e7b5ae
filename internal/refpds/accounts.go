package refpds

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Identity is the account's identity as the reference PDS publishes it, in
// the subset that OAuth clients use: DID, handle, and the "atproto_pds"
// service endpoint pdsURL (the issuer, https://pds.test).
func (a Account) Identity(pdsURL string) identity.Identity {
	return identity.Identity{
		DID:         a.DID,
		Handle:      a.Handle,
		AlsoKnownAs: []string{"at://" + a.Handle.String()},
		Services: map[string]identity.ServiceEndpoint{
			"atproto_pds": {Type: "AtprotoPersonalDataServer", URL: pdsURL},
		},
	}
}

// CreateAccount creates one more account on the server with
// com.atproto.server.createAccount: handle <name>.test, password
// <name>-refpds-password, email <name>@example.com. The name must be
// 3-18 lowercase letters or digits and not taken. The account is added to
// [Env.Accounts].
func (e *Env) CreateAccount(ctx context.Context, name string) (Account, error) {
	a := Account{
		Name:     name,
		Password: name + "-refpds-password",
		Email:    name + "@example.com",
	}
	var err error
	if a.Handle, err = syntax.ParseHandle(name + ".test"); err != nil {
		return Account{}, fmt.Errorf("refpds: account name %q: %w", name, err)
	}
	body, _ := json.Marshal(map[string]string{
		"handle":   a.Handle.String(),
		"email":    a.Email,
		"password": a.Password,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		e.Issuer+"/xrpc/com.atproto.server.createAccount", bytes.NewReader(body))
	if err != nil {
		return Account{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.HTTPClient().Do(req)
	if err != nil {
		return Account{}, fmt.Errorf("refpds: createAccount %s: %w", a.Handle, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	// The answer holds session tokens: decode only what is needed and never
	// echo a successful body.
	var out struct {
		DID     string `json:"did"`
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(raw, &out)
	if resp.StatusCode != http.StatusOK {
		return Account{}, fmt.Errorf("refpds: createAccount %s: HTTP %d %s %s",
			a.Handle, resp.StatusCode, out.Error, strings.TrimSpace(out.Message))
	}
	if a.DID, err = syntax.ParseDID(out.DID); err != nil {
		return Account{}, fmt.Errorf("refpds: createAccount %s: bad did in answer: %w", a.Handle, err)
	}
	e.addAccount(a)
	return a, nil
}
