// Package seccomp owns the seccomp profile that every pyexec container runs
// under. It starts from Docker's default profile as Go data
// (github.com/moby/profiles/seccomp, the version github.com/docker/docker
// v28.5.2 vendors) and tightens it for containers that run untrusted code with
// every capability dropped:
//
//   - every rule that Docker grants only for a capability is removed, since
//     our containers have none, so adding a capability later cannot silently
//     re-open a system call either;
//   - the system calls listed by [Denied] are refused with EPERM, including
//     ones the default allows (ptrace, personality, name_to_handle_at, ...) and
//     ones an older engine's built-in default still allows (io_uring);
//   - clone3 keeps failing with ENOSYS, so glibc falls back to clone, and
//     clone is only allowed without CLONE_NEW* flags, whatever the
//     capabilities.
//
// The profile is rendered as the JSON the Docker engine accepts in
// HostConfig.SecurityOpt ("seccomp=" + json), using only fields that engine
// 20.10 (API 1.41) reads, plus defaultErrnoRet, which 20.10 drops and newer
// engines honour; both end up refusing with EPERM. Refused calls return an
// errno rather than killing the process, so libraries that probe for a
// feature degrade gracefully.
//
// The package never talks to the engine and never reads the environment. Its
// functions are safe for concurrent use. It builds only on Linux, like the
// upstream default profile it derives from.
package seccomp
