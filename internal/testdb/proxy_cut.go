package testdb

// Cut closes every connection through the proxy, on both sides, as a
// database server that restarts (or crashes) does; new connections are
// accepted as before. The client's pooled connections are dead from then
// on: a statement sent on one is written into the socket and answered by
// EOF or a reset.
func (p *Proxy) Cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
