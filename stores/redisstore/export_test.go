package redisstore

// AcksWrites reports whether s waits for replicas on writes other than
// leases (Options.Writes, resolved).
func AcksWrites(s *Store) bool { return s.ackWrites }

// Detached reports whether s runs each call in a goroutine of its own
// because its client ignores context deadlines.
func Detached(s *Store) bool { return s.detach }
