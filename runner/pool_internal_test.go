package runner

import (
	"fmt"
	"testing"
	"time"
)

// These tests drive the pool's bookkeeping with sandboxes that have no
// container; the pool's work with the engine is in pool_test.go.

func newTestPool(t *testing.T, size int) *pool {
	t.Helper()
	r, err := New(nil, Options{Image: "img", Owner: "me", PoolSize: size, SeccompProfile: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	return r.pool
}

var fakeSeq int

// addIdle puts a container-less sandbox of preload in the idle list, ready
// since age ago.
func addIdle(p *pool, preload string, age time.Duration) *sandbox {
	fakeSeq++
	sb := &sandbox{id: fmt.Sprintf("fake%d", fakeSeq), preload: preload, image: "img", readyAt: time.Now().Add(-age)}
	p.idle[preload] = append(p.idle[preload], sb)
	return sb
}

func TestPoolTargetsFollowDemand(t *testing.T) {
	p := newTestPool(t, 4)
	got := p.targetsLocked()
	if got[PreloadNone] != 2 || got[PreloadFull] != 2 {
		t.Errorf("initial targets %v, want 2 bare and 2 %s", got, PreloadFull)
	}
	const mpl = "numpy,matplotlib"
	for i := 0; i < 30; i++ {
		p.noteDemandLocked(mpl)
	}
	got = p.targetsLocked()
	if got[PreloadNone] != 1 || got[mpl] != 3 || got[PreloadFull] != 0 {
		t.Errorf("after 30 %s requests: targets %v, want 1 bare (the floor) and 3 %s", mpl, got, mpl)
	}
	if _, ok := p.demand[PreloadFull]; !ok {
		t.Errorf("the full preload left the demand table: %v", p.demand)
	}
	// Mixed demand splits the data places.
	for i := 0; i < 30; i++ {
		p.noteDemandLocked("numpy,pandas")
		p.noteDemandLocked(mpl)
		p.noteDemandLocked(PreloadNone)
	}
	got = p.targetsLocked()
	sum := 0
	for _, n := range got {
		sum += n
	}
	if sum != 4 || got[PreloadNone] < 1 || got["numpy,pandas"] < 1 || got[mpl] < 1 {
		t.Errorf("mixed demand: targets %v, want 4 places with each kind in", got)
	}
}

func TestPoolTakePrefersExactThenSupersetThenBare(t *testing.T) {
	p := newTestPool(t, 4)
	full := addIdle(p, PreloadFull, time.Second)
	numpy := addIdle(p, "numpy", time.Second)
	bare := addIdle(p, PreloadNone, time.Second)
	mpl := addIdle(p, "numpy,matplotlib", time.Second)

	if got := p.take(t.Context(), "numpy", ""); got != numpy {
		t.Fatalf("take(numpy) = %v, want the exact match", got)
	}
	if got := p.take(t.Context(), "numpy", ""); got != mpl {
		t.Fatalf("second take(numpy) = %v, want the superset with fewest extras", got)
	}
	if got := p.take(t.Context(), "numpy,pandas", ""); got != full {
		t.Fatalf("take(numpy,pandas) = %v, want the full one", got)
	}
	if got := p.take(t.Context(), "numpy,scipy", ""); got != bare {
		t.Fatalf("take(numpy,scipy) = %v, want the bare one (nothing covers scipy)", got)
	}
	if got := p.take(t.Context(), "numpy", ""); got != nil {
		t.Fatalf("take on an empty pool = %v", got)
	}
	if p.hits.Load() != 4 || p.misses.Load() != 1 {
		t.Errorf("hits %d misses %d, want 4 and 1", p.hits.Load(), p.misses.Load())
	}
}

func TestPoolPlainCodeNeverTakesData(t *testing.T) {
	p := newTestPool(t, 2)
	addIdle(p, PreloadFull, time.Second)
	if got := p.take(t.Context(), PreloadNone, ""); got != nil {
		t.Fatalf("plain code took a %q sandbox", got.preload)
	}
}

func TestPoolRetiresOldSurplusToMakeRoom(t *testing.T) {
	p := newTestPool(t, 2)
	const mpl = "numpy,matplotlib"
	for i := 0; i < 30; i++ {
		p.noteDemandLocked(mpl)
	}
	addIdle(p, PreloadNone, time.Minute)
	young := addIdle(p, PreloadFull, time.Second)

	// Full, and the surplus is too young to go: nothing to do yet.
	if key, surplus, ok := p.nextFillLocked(); ok {
		t.Fatalf("nextFill = %q, %v; want nothing while the surplus is young", key, surplus)
	}
	young.readyAt = time.Now().Add(-surplusAge)
	key, surplus, ok := p.nextFillLocked()
	if !ok || key != mpl || surplus != young {
		t.Fatalf("nextFill = %q, %v, %v; want %s making room by retiring the old %s", key, surplus, ok, mpl, PreloadFull)
	}
	if len(p.idle[PreloadFull]) != 0 {
		t.Errorf("the surplus sandbox is still idle")
	}
}

func TestPoolStatsByFlavorAndPreload(t *testing.T) {
	p := newTestPool(t, 4)
	addIdle(p, PreloadNone, time.Second)
	addIdle(p, "numpy,pandas", time.Second)
	addIdle(p, PreloadFull, time.Second)
	p.filling["numpy,pandas"] = 1
	s := p.stats()
	if s.Idle[FlavorNone] != 1 || s.Idle[FlavorData] != 2 || s.Filling[FlavorData] != 1 {
		t.Errorf("idle %v filling %v", s.Idle, s.Filling)
	}
	if ps := s.Preloads["numpy,pandas"]; ps.Idle != 1 || ps.Filling != 1 {
		t.Errorf("preload stats %+v", s.Preloads)
	}
	if _, ok := s.Preloads[FlavorNone]; !ok {
		t.Errorf("bare preload missing from %v", s.Preloads)
	}
	if len(s.Containers) != 3 {
		t.Errorf("%d containers listed, want 3", len(s.Containers))
	}
}
