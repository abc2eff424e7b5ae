package main

import "testing"

// The Gin-facing package's exported surface grows only on purpose: a change
// that adds exports raises the budget here and says why in CHANGELOG.md.
var budgets = map[string]int{
	"../../ginoauth": 86,
}

func TestSurfaceWithinBudget(t *testing.T) {
	for dir, budget := range budgets {
		c, err := countDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if c.total() > budget {
			t.Errorf("%s exports %d identifiers, over its budget of %d: %v", dir, c.total(), budget, c.names)
		}
		if c.total() < 20 {
			t.Errorf("%s exports only %d identifiers: is the counter still counting?", dir, c.total())
		}
	}
}
