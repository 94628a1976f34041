package runner

// Labels on every container the runner creates. Reap and the reconciler
// (reconcile.go) find leftovers by them, and tests assert by them that
// nothing was left behind.
const (
	// LabelManaged is "1" on everything pyexec creates.
	LabelManaged = "io.pyexec.managed"
	// LabelOwner names the deployment (Options.Owner): replicas sharing one
	// engine have different owners and never reap each other's containers.
	LabelOwner = "io.pyexec.owner"
	// LabelInstance is the boot ID of the process that created the container.
	LabelInstance = "io.pyexec.instance"
	// LabelRole says what the container is for (roleExec, roleWarm, ...).
	LabelRole = "io.pyexec.role"
	// LabelFlavor says whether the harness preloaded libraries ("none" or
	// "data"); LabelPreload says which (flavor.go).
	LabelFlavor  = "io.pyexec.flavor"
	LabelPreload = "io.pyexec.preload"
	// LabelExpires is the Unix second (decimal) past which the container
	// cannot legitimately exist: its creation plus the longest life of its
	// role (Runner.maxLife). Any pyexec instance removes a sandbox past its
	// expiry, whatever its owner (reconcile.go).
	LabelExpires = "io.pyexec.expires"
)

const (
	// roleExec marks a container created for a waiting request.
	roleExec = "exec"
	// roleWarm marks a container created ahead of demand for the pool.
	roleWarm = "warm"
	// roleSession marks the container of a session (session.go).
	roleSession = "session"
)

// Log field keys.
const (
	logContainerID = "container_id"
	logExecID      = "exec_id"
	logDurationMS  = "duration_ms"
	logPreload     = "preload"
	logReason      = "reason"
	logOwner       = "owner"
)
