package seccomp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	moby "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// denied is sorted; Denied documents it.
var denied = []string{
	"acct",
	"add_key",
	"bpf",
	"chroot",
	"delete_module",
	"fanotify_init",
	"finit_module",
	"fsconfig",
	"fsmount",
	"fsopen",
	"fspick",
	"init_module",
	"io_uring_enter",
	"io_uring_register",
	"io_uring_setup",
	"kcmp",
	"kexec_file_load",
	"kexec_load",
	"keyctl",
	"lookup_dcookie",
	"mount",
	"mount_setattr",
	"move_mount",
	"name_to_handle_at",
	"open_by_handle_at",
	"open_tree",
	"perf_event_open",
	"personality",
	"pidfd_getfd",
	"pivot_root",
	"process_madvise",
	"process_vm_readv",
	"process_vm_writev",
	"ptrace",
	"quotactl",
	"quotactl_fd",
	"reboot",
	"request_key",
	"setns",
	"swapoff",
	"swapon",
	"umount",
	"umount2",
	"unshare",
	"userfaultfd",
}

// Denied returns, sorted, the system calls the profile refuses with EPERM:
// no rule allows them, for any argument, architecture or capability, and an
// explicit errno rule says so in the profile itself. Among them are calls
// Docker's default allows (ptrace and process_vm_* on recent kernels,
// personality for some arguments, name_to_handle_at), calls the default
// allows only with a capability (mount and the new mount API, unshare, setns,
// bpf, perf_event_open, module loading, ...), and calls the built-in default
// of older engines still allows (io_uring_*).
//
// Not listed: clone3 fails with ENOSYS instead (so glibc falls back to
// clone), and clone is allowed only without CLONE_NEW* flags. Every other
// rule the default grants only for a capability (iopl, settimeofday, syslog,
// sethostname, mbind, ...) is removed too and falls to the default action,
// EPERM.
//
// The result is a fresh copy.
func Denied() []string {
	return slices.Clone(denied)
}

// Profile returns the seccomp profile as JSON, for the engine as the
// HostConfig.SecurityOpt entry "seccomp=" + string(profile). It is built once
// per process; every call returns a fresh copy the caller may keep.
//
// An error means the upstream default profile no longer has the shape this
// package tightens (after a dependency upgrade); it is the same on every call,
// so callers may check it once at startup.
func Profile() ([]byte, error) {
	b, err := profile()
	if err != nil {
		return nil, err
	}
	return bytes.Clone(b), nil
}

var profile = sync.OnceValues(func() ([]byte, error) {
	p, err := build()
	if err != nil {
		return nil, fmt.Errorf("build seccomp profile: %w", err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode seccomp profile: %w", err)
	}
	return b, nil
})

// build tightens a fresh copy of Docker's default profile.
func build() (*moby.Seccomp, error) {
	eperm := uint(unix.EPERM)
	p := moby.DefaultProfile()
	if p.DefaultAction != specs.ActErrno || (p.DefaultErrnoRet != nil && *p.DefaultErrnoRet != eperm) {
		return nil, fmt.Errorf("upstream default action is %s, want %s with EPERM", p.DefaultAction, specs.ActErrno)
	}
	// NOTE: engine 20.10 drops defaultErrnoRet; runc then refuses with EPERM
	// for SCMP_ACT_ERRNO anyway. Newer engines pass it on.
	p.DefaultErrnoRet = &eperm

	deny := make(map[string]bool, len(denied))
	for _, name := range denied {
		deny[name] = true
	}
	rules := make([]*moby.Syscall, 0, len(p.Syscalls)+1)
	for _, r := range p.Syscalls {
		if r.Name != "" {
			// The deprecated single-name form; fold it in so that one field
			// is enough to check below.
			r.Names, r.Name = append(r.Names, r.Name), ""
		}
		if r.Includes != nil && len(r.Includes.Caps) > 0 {
			// Granted only with a capability; we run with none.
			if r.Action != specs.ActAllow {
				return nil, fmt.Errorf("upstream rule for %v applies only with %v and has action %s, want %s",
					r.Names, r.Includes.Caps, r.Action, specs.ActAllow)
			}
			continue
		}
		if r.Excludes != nil && len(r.Excludes.Caps) > 0 {
			// Applies unless a capability is held (the clone flag mask,
			// clone3's ENOSYS): make it apply whatever the capabilities.
			r.Excludes.Caps = nil
			if len(r.Excludes.Arches) == 0 && r.Excludes.MinKernel == nil {
				r.Excludes = nil
			}
		}
		if r.Action == specs.ActAllow {
			r.Names = slices.DeleteFunc(r.Names, func(name string) bool { return deny[name] })
			if len(r.Names) == 0 {
				continue
			}
		}
		rules = append(rules, r)
	}
	// Redundant with the default action, which runc then skips, but it keeps
	// the intent in the profile and holds if the default action ever changes.
	rules = append(rules, &moby.Syscall{
		LinuxSyscall: specs.LinuxSyscall{
			Names:    slices.Clone(denied),
			Action:   specs.ActErrno,
			ErrnoRet: &eperm,
		},
		Comment: "pyexec: refused for every argument and capability (runner/seccomp.Denied)",
	})
	p.Syscalls = rules
	if err := check(p, deny); err != nil {
		return nil, err
	}
	return p, nil
}

// cloneNamespaces are the flags clone must not carry: the ones the upstream
// rule masks. CLONE_NEWTIME cannot be passed to clone, only to clone3 and
// unshare, which are refused.
const cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// check verifies what the profile promises, so that an upgrade of the
// upstream default that changes its shape fails loudly instead of loosening
// the profile.
func check(p *moby.Seccomp, deny map[string]bool) error {
	var clone, clone3 int
	for _, r := range p.Syscalls {
		if r.Includes != nil && len(r.Includes.Caps) > 0 || r.Excludes != nil && len(r.Excludes.Caps) > 0 {
			return fmt.Errorf("rule for %v still depends on capabilities", r.Names)
		}
		switch r.Action {
		case specs.ActAllow, specs.ActErrno:
		default:
			return fmt.Errorf("rule for %v has action %s, want %s or %s", r.Names, r.Action, specs.ActAllow, specs.ActErrno)
		}
		for _, name := range r.Names {
			switch {
			case r.Action == specs.ActAllow && (deny[name] || name == "clone3"):
				return fmt.Errorf("%s is allowed", name)
			case name == "clone3":
				clone3++
				if r.ErrnoRet == nil || *r.ErrnoRet != uint(unix.ENOSYS) || len(r.Args) > 0 || r.Includes != nil || r.Excludes != nil {
					return errors.New("clone3 does not fail with ENOSYS unconditionally")
				}
			case name == "clone" && r.Action == specs.ActAllow:
				clone++
				if !masksNamespaces(r.Args) {
					return errors.New("clone is allowed with namespace flags")
				}
			}
		}
	}
	if clone == 0 || clone3 != 1 {
		return fmt.Errorf("found %d clone and %d clone3 rules, want at least 1 and exactly 1", clone, clone3)
	}
	return nil
}

// masksNamespaces reports whether args allow a call only when the flags
// argument carries none of cloneNamespaces.
func masksNamespaces(args []specs.LinuxSeccompArg) bool {
	for _, a := range args {
		if a.Op == specs.OpMaskedEqual && a.Value&cloneNamespaces == cloneNamespaces && a.ValueTwo == 0 {
			return true
		}
	}
	return false
}
