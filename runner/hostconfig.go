package runner

import (
	"fmt"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// sandboxUser is the unprivileged user of the image (uid:gid).
const sandboxUser = "10001:10001"

// spec is everything needed to create one sandbox container.
type spec struct {
	config  *container.Config
	host    *container.HostConfig
	network *network.NetworkingConfig
}

// sandboxSpec builds the hardened container configuration. It is the one
// place that says what a sandbox may do; tests check it field by field.
//
// entrypoint overrides the image's (the harness) when not nil; the validator
// uses it to run the parse-only process. A session's supervisor is given the
// policy (--policy), so that it starts its own checker (session.go).
func (r *Runner) sandboxSpec(role, preload string, entrypoint []string) spec {
	o := r.opts
	cfg := &container.Config{
		Image:           o.Image,
		User:            sandboxUser,
		WorkingDir:      "/tmp",
		Hostname:        "sandbox",
		NetworkDisabled: true,
		AttachStdin:     true,
		AttachStdout:    true,
		AttachStderr:    true,
		OpenStdin:       true,
		StdinOnce:       true,
		// Only what the harness needs: nothing from the host's environment.
		Env:        []string{"PYEXEC_PRELOAD=" + preloadName(preload)},
		Entrypoint: entrypoint,
		Labels: map[string]string{
			LabelManaged:  "1",
			LabelOwner:    o.Owner,
			LabelInstance: r.instance,
			LabelRole:     role,
			LabelFlavor:   FlavorOf(preload),
			LabelPreload:  preloadName(preload),
			LabelExpires:  r.expiresLabel(role, time.Now()),
		},
	}
	security := []string{"no-new-privileges:true"}
	if len(o.SeccompProfile) > 0 {
		security = append(security, "seccomp="+string(o.SeccompProfile))
	}
	pids := o.PidsLimit
	memory := o.MemoryBytes
	if role == roleSession {
		memory = o.SessionMemoryBytes
		if r.policyJSON != nil {
			cfg.Cmd = []string{"--policy", string(r.policyJSON)}
		}
	}
	host := &container.HostConfig{
		NetworkMode:    "none",
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    security,
		IpcMode:        "private",
		ShmSize:        16 << 20,
		Privileged:     false,
		AutoRemove:     false,
		// Frames go over the attach stream; nothing is logged to disk.
		LogConfig: container.LogConfig{Type: "none"},
		Tmpfs: map[string]string{
			"/tmp": fmt.Sprintf("rw,nosuid,nodev,noexec,size=%d,mode=1777", o.TmpfsBytes),
		},
		Resources: container.Resources{
			Memory:     memory,
			MemorySwap: memory, // equal to Memory: no swap
			NanoCPUs:   o.NanoCPUs,
			PidsLimit:  &pids,
			Ulimits: []*container.Ulimit{
				{Name: "nofile", Soft: 256, Hard: 256},
				{Name: "core", Soft: 0, Hard: 0},
				{Name: "fsize", Soft: o.TmpfsBytes, Hard: o.TmpfsBytes},
			},
		},
	}
	return spec{config: cfg, host: host, network: &network.NetworkingConfig{}}
}
