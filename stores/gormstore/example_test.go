package gormstore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"

	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

// Put the store on a *gorm.DB the app already has (any SQLite or Postgres
// dialector). The store does not close it: the app does. For SQLite,
// sqlitestore.DSN gives the recommended connection settings.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	db, err := gorm.Open(sqlite.Open(sqlitestore.DSN(filepath.Join(dir, "app.db"))), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	sqlDB, _ := db.DB()
	defer sqlDB.Close()

	store, err := gormstore.New(db, gormstore.Options{
		Table:           "oauth_kv",
		CleanupInterval: 10 * time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close() // stops cleanup; db stays open

	ctx := context.Background()
	_ = store.Set(ctx, "flow:abc", []byte(`{"return":"/"}`), 10*time.Minute)
	v, _ := store.Take(ctx, "flow:abc") // read and delete, exactly once
	fmt.Println(string(v))
	_, err = store.Get(ctx, "flow:abc")
	fmt.Println(err)
	// Output:
	// {"return":"/"}
	// storage: key not found
}

// Print the schema for your own migrations (then set SkipMigration).
func ExampleDDL() {
	ddl, err := gormstore.DDL(gormstore.DialectPostgres, gormstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(ddl)
	// Output:
	// CREATE TABLE IF NOT EXISTS "ginoauth_kv" (
	// 	"key"        text PRIMARY KEY,
	// 	"value"      bytea NOT NULL,
	// 	"expires_at" timestamptz,
	// 	"created_at" timestamptz NOT NULL,
	// 	"updated_at" timestamptz NOT NULL
	// );
	//
	// CREATE INDEX IF NOT EXISTS "ginoauth_kv_expires_at_idx" ON "ginoauth_kv" ("expires_at");
	//
	// CREATE TABLE IF NOT EXISTS "ginoauth_kv_locks" (
	// 	"name"       text PRIMARY KEY,
	// 	"owner"      text NOT NULL,
	// 	"expires_at" timestamptz NOT NULL
	// );
	//
	// CREATE TABLE IF NOT EXISTS "ginoauth_kv_sets" (
	// 	"set_name"   text NOT NULL,
	// 	"member"     text NOT NULL,
	// 	"expires_at" timestamptz,
	// 	PRIMARY KEY ("set_name", "member")
	// );
	//
	// CREATE INDEX IF NOT EXISTS "ginoauth_kv_sets_exp_idx" ON "ginoauth_kv_sets" ("expires_at");
}

// Run one cleanup pass from a cron job instead of the background goroutine.
func ExampleStore_DeleteExpired() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	db, _ := gorm.Open(sqlite.Open(filepath.Join(dir, "app.db")), &gorm.Config{})
	sqlDB, _ := db.DB()
	defer sqlDB.Close()
	store, _ := gormstore.New(db, gormstore.Options{})
	defer store.Close()

	n, err := store.DeleteExpired(context.Background())
	fmt.Println(n, err)
	// Output: 0 <nil>
}
