package ginoauth

import "context"

// SweepKeepAlive runs one keep-alive sweep now (the background loop's
// ticker is real time; tests move a clock instead) and returns how many
// grants it refreshed.
func SweepKeepAlive(ctx context.Context, m *Manager) int { return m.sweepKeepAlive(ctx) }

// SweepLiveness runs one liveness sweep of m's active sessions now and
// returns how many it checked.
func SweepLiveness(ctx context.Context, m *Manager) int { return m.sweepLiveness(ctx) }
