package runner

import (
	"testing"
	"time"
)

// The fair share's bookkeeping, with container-less sandboxes (see
// pool_internal_test.go); fair_test.go measures it on the engine.

func stockPool(t *testing.T, size int) *pool {
	p := newTestPool(t, size)
	for range size {
		addIdle(p, PreloadNone, time.Second)
	}
	return p
}

func TestFairShareWithoutTenantsTakesAll(t *testing.T) {
	p := stockPool(t, 3)
	for i := range 3 {
		if p.take(t.Context(), PreloadNone, "") == nil {
			t.Fatalf("take %d without a tenant got nothing from a stocked pool", i+1)
		}
	}
	if p.take(t.Context(), PreloadNone, "") != nil || p.fairCold.Load() != 0 || p.misses.Load() != 1 {
		t.Errorf("empty pool: fair_share_cold %d misses %d, want 0 and 1", p.fairCold.Load(), p.misses.Load())
	}
	if len(p.fair.tenants) != 0 {
		t.Errorf("the empty tenant is tracked: %v", p.fair.tenants)
	}
}

func TestFairShareAloneTakesAll(t *testing.T) {
	p := stockPool(t, 3)
	for i := range 3 {
		if p.take(t.Context(), PreloadNone, "team-a") == nil {
			t.Fatalf("a tenant alone was refused its take %d", i+1)
		}
	}
	if p.take(t.Context(), PreloadNone, "team-a") != nil || p.fairCold.Load() != 0 {
		t.Errorf("an empty pool counted as a fair-share refusal: %d", p.fairCold.Load())
	}
}

func TestFairShareKeepsStockForTheLighter(t *testing.T) {
	p := stockPool(t, 3)
	// B asked once a moment ago; A floods.
	if p.take(t.Context(), PreloadNone, "team-b") == nil {
		t.Fatal("B's first take was refused")
	}
	for range 5 {
		p.take(t.Context(), PreloadNone, "team-a")
	}
	// A, the heavier, got what exceeds B's share of one; B's stays.
	if n := p.usableLocked(PreloadNone); n != 1 {
		t.Fatalf("%d idle after A's flood, want B's share of 1 kept", n)
	}
	if got := p.fairCold.Load(); got != 4 {
		t.Errorf("fair_share_cold %d, want A's 4 refused takes", got)
	}
	hits := p.hits.Load()
	if p.take(t.Context(), PreloadNone, "team-b") == nil {
		t.Fatal("B found no warm sandbox while A floods")
	}
	if p.hits.Load() != hits+1 {
		t.Errorf("hits %d, want %d", p.hits.Load(), hits+1)
	}
	// A refused request counts no demand: the preload split is B's and
	// A's granted takes only (2 bare requests of the 3 granted plus the
	// initial weights).
	if d := p.demand[PreloadNone]; d > 4 {
		t.Errorf("bare demand %.2f counts refused requests", d)
	}
}

func TestFairShareForgetsIdleTenants(t *testing.T) {
	var f fairShare
	now := time.Now()
	f.allowLocked("team-b", 3, 3, now.Add(-2*fairActiveWindow))
	if !f.allowLocked("team-a", 3, 3, now) || !f.allowLocked("team-a", 1, 3, now) {
		t.Fatal("A was refused the last sandbox while B is long gone")
	}
	if _, ok := f.tenants["team-b"]; ok {
		t.Error("a tenant idle past the window is still tracked")
	}
	// Demand decays: B, heavy a while ago, is lighter than A now.
	g := fairShare{}
	for range 20 {
		g.allowLocked("team-b", 3, 3, now.Add(-50*time.Second))
	}
	g.allowLocked("team-a", 3, 3, now.Add(-time.Second))
	g.allowLocked("team-a", 3, 3, now)
	if g.allowLocked("team-a", 1, 3, now) {
		t.Error("A took the last sandbox from B, lighter now that its old burst decayed")
	}
	if !g.allowLocked("team-b", 1, 3, now) {
		t.Error("B, the lighter, was refused the last sandbox")
	}
}
