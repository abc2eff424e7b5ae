package gormstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
)

// readPath runs the two hot reads (Get and Members) as prepared
// database/sql statements. Every session check is one Get; GORM's query
// path (statement building, callbacks, re-parsing the SQL in the driver)
// costs more than the primary-key lookup itself. GORM still runs the
// schema and every write.
type readPath struct {
	db *sql.DB // Options.Reader, or the pool under the *gorm.DB
	// detach runs the reads without the caller's cancellation (SQLite):
	// with a cancellable context, database/sql and go-sqlite3 each start a
	// goroutine per query to watch it, which costs more than the lookup.
	// A SQLite read cannot stall on the network, WAL readers take no locks,
	// and busy_timeout bounds the rare wait there is; an interrupt could
	// not stop a disk that hangs anyway.
	detach bool

	mu    sync.RWMutex
	stmts map[string]*sql.Stmt // by query text
	// closed stops a statement being prepared after Close.
	closed bool
}

// newReadPath returns nil when there is no *sql.DB to use (the *gorm.DB
// runs on a transaction or a custom ConnPool): reads then go through GORM.
func newReadPath(reader *sql.DB, pool any, detach bool) *readPath {
	if reader == nil {
		reader, _ = pool.(*sql.DB)
	}
	if reader == nil {
		return nil
	}
	return &readPath{db: reader, stmts: map[string]*sql.Stmt{}, detach: detach}
}

// query runs q (already in the driver's placeholder style).
func (r *readPath) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if r.detach {
		ctx = context.WithoutCancel(ctx)
	}
	if st := r.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return r.db.QueryContext(ctx, q, args...)
}

// stmt returns the prepared statement for q, preparing it on first use
// (outside the lock, so a stalled database holds no other reader behind
// it; a statement prepared twice by a race is closed again). A failed
// prepare (the table is not created yet under SkipMigration, the database
// is down) is not remembered: that call runs unprepared and the next one
// tries again.
func (r *readPath) stmt(ctx context.Context, q string) *sql.Stmt {
	r.mu.RLock()
	st, ok := r.stmts[q]
	closed := r.closed
	r.mu.RUnlock()
	if ok || closed {
		return st
	}
	st, err := r.db.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.stmts[q]; ok || r.closed {
		_ = st.Close()
		return prev
	}
	r.stmts[q] = st
	return st
}

func (r *readPath) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for q, st := range r.stmts {
		_ = st.Close()
		delete(r.stmts, q)
	}
}

// numbered rewrites the ? placeholders of q as $1, $2, ... for Postgres,
// which GORM does for its own statements. The store's queries have no
// string literals, so every ? is a placeholder.
func numbered(q string) string {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c != '?' {
			b.WriteRune(c)
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}
