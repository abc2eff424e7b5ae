package encryptedstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"time"

	"github.com/gin-atproto/oauth-sessions/examples/custom-storage/encryptedstore"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// Wrap any store (memstore here; redisstore in the example app). The
// wrapper reads and writes plaintext; the inner store only ever sees
// ciphertext, and the wrapper keeps the inner store's capabilities.
func ExampleNew() {
	key := make([]byte, encryptedstore.KeySize) // in an app: from a secret store, the same on every instance
	if _, err := rand.Read(key); err != nil {
		log.Fatal(err)
	}
	inner := memstore.New()
	store, err := encryptedstore.New(inner, key)
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	_ = store.Set(ctx, "session:1", []byte("alice's tokens"), time.Hour)
	v, _ := store.Get(ctx, "session:1")
	fmt.Println(string(v))
	raw, _ := inner.Get(ctx, "session:1")
	fmt.Println("plaintext at rest:", bytes.Contains(raw, []byte("alice")))
	_, canSwap := store.(storage.Swapper) // sliding sessions
	_, canLock := store.(storage.Locker)  // one refresh at a time across instances
	fmt.Println(canSwap, canLock)
	// Output:
	// alice's tokens
	// plaintext at rest: false
	// true true
}
