package runner

import (
	"math"
	"time"
)

// fairShare divides the warm pool between tenants (Request.Tenant: the API
// key's name), so that one tenant running executions back to back cannot
// take every warm container as fast as the pool refills and push the others
// onto cold starts.
//
// Each tenant's demand is its recent requests, an exponentially decayed
// count (half-life fairHalfLife). A tenant is active while it asked in the
// last fairActiveWindow. With n tenants active, each has a share of
// max(1, size/n) warm containers, and the pool keeps the shares of the
// tenants that asked less than the taker: a tenant takes a warm container
// only if the idle sandboxes its code could use still cover, after the
// take, the share of every active tenant lighter than itself. The lightest
// tenant takes whatever is idle; a flooder is always the heaviest, gets
// what exceeds the others' shares, and otherwise a container created for
// it: it pays its own cold starts while the others keep finding warm ones.
// A refused request changes nothing in the pool: it takes nothing, counts
// no demand for the preload split, and starts no refill, so the pool never
// holds more than its size.
//
// The empty tenant (API keys off, internal callers) is never refused and
// counts as no tenant: without keys the pool behaves as before.
//
// fairShare is guarded by the pool's mutex.
type fairShare struct {
	// tenants holds the tenants seen in the last fairActiveWindow.
	tenants map[string]*tenantUse
}

// tenantUse is one tenant's recent demand.
type tenantUse struct {
	lastSeen time.Time
	// demand is the decayed count of requests at lastSeen.
	demand float64
}

// Fair share tuning.
const (
	// fairActiveWindow is how long after its last request a tenant keeps
	// its share of the pool.
	fairActiveWindow = time.Minute
	// fairHalfLife is how fast a tenant's past requests stop counting in
	// its demand.
	fairHalfLife = 10 * time.Second
)

// demandAt is u's demand decayed to now.
func (u *tenantUse) demandAt(now time.Time) float64 {
	return u.demand * math.Exp2(-now.Sub(u.lastSeen).Seconds()/fairHalfLife.Seconds())
}

// allowLocked reports whether tenant may take one of the stock idle
// sandboxes its code could use, in a pool of size; it records the request.
// With no stock there is nothing to refuse: it answers true (the take
// misses as it would without tenants).
func (f *fairShare) allowLocked(tenant string, stock, size int, now time.Time) bool {
	if tenant == "" {
		return true
	}
	if f.tenants == nil {
		f.tenants = map[string]*tenantUse{}
	}
	me := f.tenants[tenant]
	if me == nil {
		me = &tenantUse{lastSeen: now}
		f.tenants[tenant] = me
	}
	me.demand = me.demandAt(now) + 1
	me.lastSeen = now
	var lighter, active int
	for name, u := range f.tenants {
		switch {
		case u == me:
			active++
		case now.Sub(u.lastSeen) > fairActiveWindow:
			delete(f.tenants, name)
		default:
			active++
			if u.demandAt(now) < me.demand {
				lighter++
			}
		}
	}
	share := max(1, size/active)
	return stock <= 0 || stock-1 >= lighter*share
}
