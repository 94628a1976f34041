"""The working directory of an execution or session: files in, files out.

Runs in the sandbox's one Python process (child.py). The working directory
is WORK_DIR on the sandbox's tmpfs, the user's code's current directory; the
code's output files are what it leaves under OUTPUTS_DIR there.

Files in (write_files): the request's "files", [{"name", "content"
(base64)}], are decoded one at a time and written before the code runs, each
opened with O_WRONLY|O_CREAT|O_TRUNC|O_NOFOLLOW|O_NONBLOCK (mode 0600) below
directories opened with O_NOFOLLOW: no symlink is followed, a FIFO is not
waited on. Names are checked again here (the service checked them first):
plain components (non-empty, at most 255 bytes of UTF-8, no NUL or control
character, no backslash, not "." or "..", no leading or trailing space)
joined by "/", at most MAX_PATH_DEPTH of them. A bad name or a failed write is
an error reported, never a file written elsewhere.

Files out (Tracker.scan): OUTPUTS_DIR is walked without following anything
(every directory opened with O_NOFOLLOW relative to its parent's
descriptor), to MAX_DEPTH components, looking at no more than MAX_ENTRIES
entries. Each entry is lstat'ed: regular files are candidates; symlinks,
FIFOs, sockets and devices are never opened, and are listed in
"files_skipped" with the reason "symlink", "fifo", "socket" or "device"; a
directory whose entries would be deeper than MAX_DEPTH is skipped as
"directory too deep". A candidate is opened with O_RDONLY|O_NOFOLLOW|
O_NONBLOCK and fstat'ed again (the same inode, still a regular file) before
at most its cap is read. Caps (request "options", defaults below):
max_files, max_file_bytes, max_files_total_bytes; a file past any of them is
left out and "files_truncated" is true. Only files (and skipped entries) created
or changed since the tracker's last scan are reported (size, mtime_ns and
inode compared), so a session's cell lists what it made, and a single-shot
execution, which starts with an empty OUTPUTS_DIR, everything. Names are
relative to OUTPUTS_DIR, components joined by "/".
"""

import binascii
import os
import stat

WORK_DIR = "/tmp/work"
OUTPUTS_DIR = "outputs"
# Components of a file name below OUTPUTS_DIR; a name below WORK_DIR (an
# input file, a session's list or get) may have one more (OUTPUTS_DIR).
MAX_DEPTH = 4
MAX_PATH_DEPTH = MAX_DEPTH + 1
MAX_PATH_BYTES = 1024
# Entries looked at by one scan, and skipped entries reported.
MAX_ENTRIES = 10000
MAX_SKIPPED = 100
# A session's list of its working directory.
MAX_LISTED = 1000
MAX_NAME_BYTES = 255

_DEFAULTS = {
    "max_files": (20, 0, 1000),
    "max_file_bytes": (10 << 20, 0, 1 << 30),
    "max_files_total_bytes": (16 << 20, 0, 1 << 30),
}

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _opt_int(options, key):
    default, lo, hi = _DEFAULTS[key]
    val = options.get(key) if isinstance(options, dict) else None
    if type(val) is float and val.is_integer():
        val = int(val)
    if type(val) is not int:
        return default
    return max(lo, min(hi, val))


def prepare():
    """Creates WORK_DIR and an empty OUTPUTS_DIR in it and makes WORK_DIR the
    current directory (before "ready")."""
    os.makedirs(WORK_DIR, mode=0o700, exist_ok=True)
    os.chdir(WORK_DIR)
    ensure_outputs()


def ensure_outputs():
    """Creates OUTPUTS_DIR again if the code removed it (a session)."""
    try:
        os.mkdir(OUTPUTS_DIR, 0o700)
    except OSError:
        pass


# ---------------------------------------------------------------- names


def check_name(name):
    """The components of a file name, or ValueError saying what is wrong."""
    if type(name) is not str or not name:
        raise ValueError("a file name must be a non-empty string")
    parts = name.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        raise ValueError("file name %r has more than %d components" % (name[:300], MAX_PATH_DEPTH))
    if len(name) > MAX_PATH_BYTES or len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise ValueError("file name %r is longer than %d bytes" % (name[:300], MAX_PATH_BYTES))
    for part in parts:
        _check_component(part, name)
    return parts


def _check_component(part, name):
    if not part or part in (".", ".."):
        raise ValueError("file name %r is not a plain name" % (name[:300],))
    try:
        size = len(part.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("file name %r is not valid UTF-8" % (name[:300],)) from None
    if size > MAX_NAME_BYTES:
        raise ValueError("file name %r is longer than %d bytes" % (name[:300], MAX_NAME_BYTES))
    if part != part.strip(" "):
        raise ValueError("file name %r starts or ends with a space" % (name[:300],))
    for ch in part:
        if ch < " " or ch == "\x7f" or ch == "\\":
            raise ValueError("file name %r holds a control character or a backslash" % (name[:300],))


def _open_parent(parts, create):
    """A descriptor of the directory holding parts[-1] below the current
    directory, walked with O_NOFOLLOW (created when create is set)."""
    fd = os.open(".", _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            if create:
                try:
                    os.mkdir(part, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
            sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd


# ---------------------------------------------------------------- files in


def write_files(files):
    """Writes the request's files (decoding one at a time and dropping each
    content once written). Returns None, or an error dict for the report:
    nothing more is written after the first failure."""
    if files is None:
        return None
    if type(files) is not list:
        return _error("ValueError", "files must be a list")
    seen = set()
    for i, item in enumerate(files):
        if type(item) is not dict:
            return _error("ValueError", "file %d is not an object" % i)
        name = item.get("name")
        try:
            parts = check_name(name)
            if name in seen:
                raise ValueError("file name %r appears twice" % (name[:300],))
            seen.add(name)
            content = item.get("content")
            if type(content) is not str:
                raise ValueError("file %r has no base64 content" % (name[:300],))
            item["content"] = None  # the request no longer holds it
            try:
                data = binascii.a2b_base64(content)
            except binascii.Error as exc:
                raise ValueError("file %r: bad base64: %s" % (name[:300], exc)) from None
            del content
            write_file(parts, data)
            del data
        except (ValueError, OSError) as exc:
            return _error(type(exc).__name__ if isinstance(exc, ValueError) else "OSError",
                          "input file: %s" % (exc,))
    return None


def write_file(parts, data):
    """Writes data to the file named by parts below the current directory."""
    parent = _open_parent(parts, create=True)
    try:
        fd = os.open(parts[-1], _WRITE_FLAGS, 0o600, dir_fd=parent)
    finally:
        os.close(parent)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("%s is not a regular file" % "/".join(parts))
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _error(kind, message):
    return {"type": kind, "message": message[:10000], "traceback": "", "line": None, "column": None}


# ---------------------------------------------------------------- files out


def _skip_reason(mode):
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "not a regular file"


class _Walk:
    """One walk of a directory tree: regular files as (name, lstat) in
    sorted order, skipped entries, and whether the entry budget ran out."""

    def __init__(self, max_depth):
        self.max_depth = max_depth
        self.files = []
        self.skipped = []
        self.truncated = False
        self.budget = MAX_ENTRIES

    def skip(self, name, reason, st):
        if len(self.skipped) < MAX_SKIPPED:
            self.skipped.append(({"name": name, "reason": reason}, _key(st)))
        else:
            self.truncated = True

    def walk(self, dir_fd, prefix, depth):
        """Walks the directory open as dir_fd; its entries are at depth."""
        try:
            it = os.scandir(dir_fd)
        except OSError:
            return
        with it:
            names = []
            for entry in it:
                if self.budget <= 0:
                    self.truncated = True
                    break
                self.budget -= 1
                names.append(entry.name)
        names.sort()
        for name in names:
            rel = prefix + name
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            mode = st.st_mode
            if stat.S_ISREG(mode):
                self.files.append((rel, st))
            elif stat.S_ISDIR(mode):
                if depth >= self.max_depth:
                    self.skip(rel, "directory too deep", st)
                    continue
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError:
                    continue
                try:
                    self.walk(sub, rel + "/", depth + 1)
                finally:
                    os.close(sub)
            else:
                self.skip(rel, _skip_reason(mode), st)


def _walk_dir(path, max_depth):
    """_Walk of path below the current directory; None when path is not a
    directory (it is then reported as skipped if it is something else)."""
    w = _Walk(max_depth)
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError:
        try:
            st = os.stat(path, follow_symlinks=False)
            w.skip(path, _skip_reason(st.st_mode), st)
        except OSError:
            pass
        return w
    try:
        w.walk(fd, "", 1)
    finally:
        os.close(fd)
    return w


def _key(st):
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def read_regular(dir_fd, name, st, cap):
    """The bytes of the regular file name (relative to dir_fd, or to the
    current directory when dir_fd is None) if it is still the file st
    describes and at most cap bytes long; None otherwise."""
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or now.st_ino != st.st_ino or now.st_dev != st.st_dev:
            return None
        if now.st_size > cap:
            return None
        chunks, size = [], 0
        while size <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            return None
        return b"".join(chunks)
    finally:
        os.close(fd)


class Tracker:
    """The files under OUTPUTS_DIR as of the last scan, to report only what
    changed since."""

    def __init__(self):
        self.known = {}  # name below OUTPUTS_DIR -> (size, mtime_ns, inode)
        self.skipped = set()  # (name, reason, key) of the entries skipped

    def scan(self, options):
        """The outputs message's file fields for what OUTPUTS_DIR holds that
        is new or changed: {"files": [{"name", "size", "content"}],
        "files_truncated": bool, "files_skipped": [{"name", "reason"}]}."""
        max_files = _opt_int(options, "max_files")
        max_bytes = _opt_int(options, "max_file_bytes")
        max_total = _opt_int(options, "max_files_total_bytes")
        w = _walk_dir(OUTPUTS_DIR, MAX_DEPTH)
        skipped = {(e["name"], e["reason"], key) for e, key in w.skipped}
        out = {
            "files": [],
            "files_truncated": w.truncated,
            "files_skipped": [e for e, key in w.skipped if (e["name"], e["reason"], key) not in self.skipped],
        }
        self.skipped = skipped
        known, total = {}, 0
        base = None
        if w.files:
            try:
                base = os.open(OUTPUTS_DIR, _DIR_FLAGS)
            except OSError:
                pass
        try:
            for rel, st in w.files:
                key = _key(st)
                known[rel] = key
                if base is None or self.known.get(rel) == key:
                    continue
                size = st.st_size
                if len(out["files"]) >= max_files or size > max_bytes or total + size > max_total:
                    out["files_truncated"] = True
                    continue
                try:
                    data = read_regular_at(base, rel, st, min(max_bytes, max_total - total))
                except OSError:
                    data = None
                if data is None:
                    out["files_truncated"] = True
                    continue
                total += len(data)
                out["files"].append(
                    {"name": rel, "size": len(data), "content": binascii.b2a_base64(data, newline=False).decode("ascii")}
                )
        finally:
            if base is not None:
                os.close(base)
        self.known = known
        return out

    def refresh(self):
        """Takes what OUTPUTS_DIR holds as known (after a session's put)."""
        w = _walk_dir(OUTPUTS_DIR, MAX_DEPTH)
        self.known = {rel: _key(st) for rel, st in w.files}
        self.skipped = {(e["name"], e["reason"], key) for e, key in w.skipped}


def read_regular_at(base, rel, st, cap):
    """read_regular for rel ("a/b/c") below the directory open as base,
    walking its directories with O_NOFOLLOW."""
    parts = rel.split("/")
    fd = base
    try:
        for part in parts[:-1]:
            sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
            if fd is not base:
                os.close(fd)
            fd = sub
        return read_regular(fd, parts[-1], st, cap)
    finally:
        if fd is not base:
            os.close(fd)


# ---------------------------------------------------------------- a session's files


def get_file(name, options):
    """A session's file for download: (file dict, None) or (None, error
    dict). A plain name is looked up in OUTPUTS_DIR first, then in the
    working directory; "outputs/x" names the one in OUTPUTS_DIR."""
    try:
        parts = check_name(name)
    except ValueError as exc:
        return None, _error("ValueError", str(exc))
    cap = _opt_int(options, "max_file_bytes")
    candidates = [parts]
    if len(parts) < MAX_PATH_DEPTH and parts[0] != OUTPUTS_DIR:
        candidates.insert(0, [OUTPUTS_DIR] + parts)
    for cand in candidates:
        try:
            parent = _open_parent(cand, create=False)
        except OSError:
            continue
        try:
            try:
                st = os.stat(cand[-1], dir_fd=parent, follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_size > cap:
                return None, _error("FileTooLargeError", "%s is %d bytes, over the cap of %d" % ("/".join(cand), st.st_size, cap))
            data = read_regular(parent, cand[-1], st, cap)
        except OSError:
            continue
        finally:
            os.close(parent)
        if data is None:
            continue
        rel = "/".join(cand)
        return {"name": rel, "size": len(data), "content": binascii.b2a_base64(data, newline=False).decode("ascii")}, None
    return None, _error("FileNotFoundError", "no regular file named %s in the working directory" % (name[:300],))


def list_files():
    """Every regular file of the working directory tree (OUTPUTS_DIR's
    included) with its size, no content: the outputs message's file fields."""
    w = _walk_dir(".", MAX_PATH_DEPTH)
    files = [{"name": rel, "size": st.st_size} for rel, st in w.files[:MAX_LISTED]]
    return {
        "files": files,
        "files_truncated": w.truncated or len(w.files) > MAX_LISTED,
        "files_skipped": [e for e, key in w.skipped],
    }
