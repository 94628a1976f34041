// The reconciler, in the style of Nomad's docker driver dangling-container
// reconciler: a loop that periodically lists every pyexec container on the
// engine and removes two kinds of leftovers.
//
//   - Expired: every sandbox carries LabelExpires, the Unix second past which
//     it cannot legitimately exist (created + maxLife of its role). Any
//     instance removes any pyexec sandbox past its expiry, whatever its owner,
//     so the containers of a replica that died and never came back (or came
//     back under another SERVICE_ID) are gone within their expiry plus one
//     period. A container of another owner without a readable expiry (made by
//     an older pyexec) is left alone and logged once per owner.
//   - Dangling: a container labelled with this runner's instance that no
//     execution, pool slot, validator or session owns (Runner.tracked) and
//     that was created more than a grace period ago. A create whose answer
//     never arrived (a timeout, a connection lost, the service killed
//     mid-create) leaves exactly that: the engine made the container, the
//     runner never learnt its ID. A client that leaves does not: creates
//     are not cut off by the request's context (prepareWith).
//
// A container this runner tracks is never removed here, expired or not; the
// pool's janitor (pool.go) retires dead or old idle sandboxes and refills.
// Removal goes through the runner's one removal path (Runner.remove), so the
// removed-containers counters and the tracked set stay right; each removal
// is logged at Warn and counted in pyexec_reconciler_removed_total{reason}.
// Reap (at start, same owner, earlier instances) and Close's sweep (this
// instance) remain: the reconciler covers the time in between.

package runner

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/logctx"
)

// Reasons the reconciler removes a container (the reason label of
// pyexec_reconciler_removed_total and the reason log field).
const (
	reasonExpired  = "expired"
	reasonDangling = "dangling"
)

// Reconciler defaults.
const (
	// defaultDanglingGrace is how old an untracked container of this
	// instance must be before it is removed: the runner learns a
	// container's ID when its create returns, so a younger one may be a
	// create still under way.
	defaultDanglingGrace = time.Minute
	// defaultReconcileOpTimeout bounds one list or one removal.
	defaultReconcileOpTimeout = DefaultCleanupTimeout
)

// expiryMargin is added to every sandbox's longest life: clock skew
// between replicas sharing an engine, and scheduling delays on a loaded
// host.
const expiryMargin = 5 * time.Second

// maxLife is the longest a container of role can exist, from just before
// its create to the end of its removal, if the runner runs as designed:
// every step is bounded by a timeout in Options or a constant. It sets
// LabelExpires (sandboxSpec). Too short, and another instance would remove
// a sandbox in use; too long only delays the removal of a dead replica's
// leftovers.
func (r *Runner) maxLife(role string) time.Duration {
	o := r.opts
	// discard: exitGrace for the harness to exit, then the removal.
	end := exitGrace + o.CleanupTimeout
	// An execution: start, the code's timeout, the kill grace, the kill
	// or the diagnosis (each bounded by CleanupTimeout), then discard.
	exec := o.StartTimeout + o.MaxTimeout + o.KillGrace + o.CleanupTimeout + end
	var life time.Duration
	switch role {
	case roleWarm:
		// Idle in the pool until PoolMaxAge (checked every janitorPeriod),
		// then possibly taken just before, and run as an execution.
		life = o.PoolMaxAge + janitorPeriod + exec
	case roleValidator:
		// Replaced on its first use past PoolMaxAge; that use may still
		// be answered.
		life = o.StartTimeout + o.PoolMaxAge + validateTimeout + end
	case roleProbe:
		// Started, its ready report read, discarded.
		life = o.StartTimeout + end
	case roleSession:
		// Started, then alive until SessionMaxLifetime (the janitor looks
		// every sessionJanitorPeriod at most); an op that began just
		// before runs to its end: the longest op's deadline, the
		// supervisor's interrupt grace, the kill grace, the kill or the
		// diagnosis; then discard.
		op := max(o.MaxTimeout, sessionOpTimeout) + interruptGrace + o.KillGrace + o.CleanupTimeout
		life = o.StartTimeout + o.SessionMaxLifetime + sessionJanitorPeriod + op + end
	default: // roleExec
		life = exec
	}
	return life + expiryMargin
}

// expiresLabel is the value of LabelExpires for a container of role
// created now.
func (r *Runner) expiresLabel(role string, now time.Time) string {
	return strconv.FormatInt(now.Add(r.maxLife(role)).Unix(), 10)
}

// reconciler removes expired and dangling containers; see the file comment.
type reconciler struct {
	cli      Engine
	owner    string
	instance string
	tracked  func(id string) bool
	remove   func(ctx context.Context, id string)
	metrics  *counters

	// period is how often run lists the containers.
	period time.Duration
	// grace is how old an untracked container of this instance must be
	// before it counts as dangling.
	grace time.Duration
	// opTimeout bounds one list and one removal.
	opTimeout time.Duration

	mu sync.Mutex // guards noExpiry; once may run from tests beside run
	// noExpiry holds the owners whose containers without an expiry label
	// were already logged.
	noExpiry map[string]bool
}

// newReconciler returns a reconciler for the containers of owner and
// instance. tracked says whether the runner still owns a container; remove
// is the runner's one removal path (Runner.remove); metrics receives the
// counts by reason.
func newReconciler(cli Engine, owner, instance string, tracked func(id string) bool,
	remove func(ctx context.Context, id string), metrics *counters) *reconciler {
	return &reconciler{
		cli: cli, owner: owner, instance: instance, tracked: tracked, remove: remove, metrics: metrics,
		period: DefaultReconcilePeriod, grace: defaultDanglingGrace, opTimeout: defaultReconcileOpTimeout,
		noExpiry: map[string]bool{},
	}
}

// newReconciler returns the reconciler of r (Start runs it).
func (r *Runner) newReconciler() *reconciler {
	c := newReconciler(r.cli, r.opts.Owner, r.instance, r.tracked, r.remove, r.metrics)
	c.opTimeout = r.opts.CleanupTimeout
	c.period = r.opts.ReconcilePeriod
	return c
}

// run reconciles at once, then every period, until ctx ends. ctx carries
// the logger. A failed pass (engine down) is logged at Warn once, until a
// pass succeeds again.
func (c *reconciler) run(ctx context.Context) {
	t := time.NewTicker(c.period)
	defer t.Stop()
	failing := false
	for {
		_, err := c.once(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			logctx.From(ctx).WithError(err).Warn("reconcile containers")
		case err == nil && failing:
			logctx.From(ctx).Info("reconcile containers: engine answers again")
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// once lists the managed containers and removes the expired and dangling
// ones; it returns how many it removed.
func (c *reconciler) once(ctx context.Context) (removed int, err error) {
	lctx, cancel := context.WithTimeout(ctx, c.opTimeout)
	list, err := c.cli.ContainerList(lctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", LabelManaged+"=1"),
	})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	now := time.Now()
	for _, ct := range list.Items {
		if ctx.Err() != nil {
			return removed, ctx.Err()
		}
		reason := c.judge(ctx, ct, now)
		if reason == "" || c.gone(ctx, ct.ID) {
			continue
		}
		logctx.From(ctx).WithFields(logrus.Fields{
			logContainerID: shortID(ct.ID),
			logReason:      reason,
			logOwner:       ct.Labels[LabelOwner],
			logRole:        ct.Labels[LabelRole],
		}).Warn("reconciler removing container")
		rctx, cancel := context.WithTimeout(ctx, c.opTimeout)
		c.remove(rctx, ct.ID)
		cancel()
		c.metrics.countReconciled(reason)
		removed++
	}
	return removed, nil
}

// gone reports whether the container no longer exists: its owner (or
// another instance) removed it since the list. Removing it again would
// count a removal that did not happen.
func (c *reconciler) gone(ctx context.Context, id string) bool {
	ictx, cancel := context.WithTimeout(ctx, c.opTimeout)
	defer cancel()
	_, err := c.cli.ContainerInspect(ictx, id, client.ContainerInspectOptions{})
	return errdefs.IsNotFound(err)
}

// judge says why ct must go (reasonExpired, reasonDangling), or "" to keep
// it.
func (c *reconciler) judge(ctx context.Context, ct container.Summary, now time.Time) string {
	if ct.State == "removing" {
		return "" // someone is removing it already
	}
	mine := ct.Labels[LabelOwner] == c.owner && ct.Labels[LabelInstance] == c.instance
	if mine && c.tracked(ct.ID) {
		return ""
	}
	expires, err := strconv.ParseInt(ct.Labels[LabelExpires], 10, 64)
	switch {
	case err == nil && now.Unix() > expires:
		return reasonExpired
	case mine && now.Sub(time.Unix(ct.Created+1, 0)) > c.grace:
		// Created is in whole seconds, rounded down: the +1 keeps the
		// grace whole.
		return reasonDangling
	case err != nil && !mine:
		c.logNoExpiry(ctx, ct)
	}
	return ""
}

// logNoExpiry notes, once per owner, containers left alone for want of an
// expiry label.
func (c *reconciler) logNoExpiry(ctx context.Context, ct container.Summary) {
	owner := ct.Labels[LabelOwner]
	c.mu.Lock()
	seen := c.noExpiry[owner]
	if !seen && len(c.noExpiry) < maxNoExpiryOwners {
		c.noExpiry[owner] = true
	}
	c.mu.Unlock()
	if !seen {
		logctx.From(ctx).WithFields(logrus.Fields{logContainerID: shortID(ct.ID), logOwner: owner}).
			Info("reconciler leaves containers without an expiry label (older pyexec) to their owner")
	}
}

// maxNoExpiryOwners bounds the owners remembered by logNoExpiry.
const maxNoExpiryOwners = 1000
