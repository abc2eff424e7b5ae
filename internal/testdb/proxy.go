package testdb

import (
	"context"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/postgresstore"
)

// Proxy is a TCP proxy between a test and a database server, for fault
// tests that must not touch the shared server. While stalled it forwards
// nothing in either direction and keeps every connection open: a database
// that neither answers nor refuses, as a blackholed network looks.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	stalled bool
	resume  chan struct{} // closed when a stall ends
	conns   []net.Conn
	wg      sync.WaitGroup
}

// NewProxy listens on a loopback port and forwards to target (host:port)
// until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, resume: make(chan struct{})}
	close(p.resume)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Stall stops all traffic until Resume.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled = true
		p.resume = make(chan struct{})
	}
}

// Resume lets traffic flow again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.resume)
	}
}

func (p *Proxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resume
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(context.Background(), "tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(s, c)
		go p.pipe(c, s)
	}
}

// pipe copies src to dst, holding each chunk while the proxy is stalled.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-p.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = dst.Close()
			return
		}
	}
}

func (p *Proxy) close() {
	_ = p.ln.Close()
	p.Resume()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// PostgresThrough returns a Postgres store on tables of its own whose
// connections go through a new Proxy, and the proxy. It skips t when
// PostgresEnv is unset.
func PostgresThrough(t testing.TB) (storage.Store, *Proxy) {
	t.Helper()
	u, err := url.Parse(PostgresDSN(t))
	if err != nil {
		t.Fatalf("testdb: %s: %v", PostgresEnv, err)
	}
	p := NewProxy(t, u.Host)
	table := randomTable()
	postgresTable(t, table) // creates the tables, and drops them at cleanup, bypassing the proxy
	u.Host = p.Addr()
	s, err := postgresstore.Open(u.String(), postgresstore.Options{Table: table, SkipMigration: true})
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(func() { p.Resume(); _ = s.Close() })
	return s, p
}
