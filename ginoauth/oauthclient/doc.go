// Package oauthclient is the contract between ginoauth and the AT Protocol
// OAuth client that runs the protocol for it: four methods on a Client, a
// ready Session for calls to the account's PDS, and the errors a login can
// end with. ginoauth/indigoclient implements it over indigo's
// atproto/auth/oauth; any other client, or a hand-written one, works the
// same way:
//
//	var client oauthclient.Client = indigoclient.New(config, store, indigoclient.Options{})
//	mgr, err := ginoauth.New(ginoauth.Config{OAuthClient: client, ...})
//
// The client owns the protocol (PAR, PKCE S256, DPoP, the code exchange and
// its iss and sub checks, token refresh) and its own storage of flow secrets
// and tokens. ginoauth owns everything about the browser and the device: the
// flow record (return path, browser binding), the cookie or bearer token and
// the device session record. No application data travels inside state.
//
// Like package storage, this package imports only the standard library, so
// a client implementation links no web framework.
//
// # Growing the contract
//
// The contract stays small. What some clients can do and others cannot is
// an optional capability: a separate interface, found by a type assertion
// on the Client (or on a Session), which the library uses when it is there
// and does without when it is not. MetadataProvider, PermissionSetResolver,
// GrantLimiter, RefreshNotifier, Refresher, Authenticator and
// KeyRetirement are such capabilities. A new need is met by adding another
// one, never by adding a method to Client or Session, so that every
// existing client keeps compiling and working. The storage contract grows
// the same way (see package storage).
package oauthclient
