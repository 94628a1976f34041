/*
 * pyexec supervisor: PID 1 of a single-use sandbox container (trusted).
 *
 * It starts the runner child (/opt/pyexec/child.py, one Python process) at
 * once, passes its "ready" message on as a frame, forwards one request from
 * stdin to it (or, in a session, one request per cell), captures its stdout
 * and stderr through pipes with size caps, enforces the deadline, and writes
 * what happened as frames on the container's stdout. It never interprets the child's report: the service
 * does, with the same care as anything else the child sends.
 *
 * Only this process writes to the container's stdout. The child has its fd 1
 * and 2 on capture pipes and no other descriptor of ours, and this process is
 * not dumpable, so the child can neither write frames nor reach our
 * descriptors through /proc. As the namespace's init, it gets no signal from
 * inside the container that it has no handler for, and it installs none.
 *
 * Written in C rather than Python so that an execution starts one
 * interpreter, not two: a second Python process cost about 35 ms of CPU per
 * execution, most of the harness's overhead over a bare container.
 *
 * stdin (from the service), one of two modes chosen by the first header:
 *   single-shot: "run <timeout_ms> <stdout_cap> <stderr_cap> <outputs_cap> <length>[ <flags>]\n"
 *     followed by <length> bytes of request JSON, handed to the child as is
 *     (then its request pipe is closed); frames for the one execution
 *     follow, then this process exits.
 *   session: "cell <timeout_ms> <stdout_cap> <stderr_cap> <outputs_cap> <length>\n"
 *     and <length> bytes, again and again: each body is handed to the child
 *     as "<length>\n" + body on its request pipe, which stays open; each cell
 *     gets its frames (stdout, stderr, report, outputs, exit). At the
 *     deadline the child gets SIGINT (a KeyboardInterrupt in the user's
 *     code); if it has not reported INTERRUPT_GRACE_MS later, its process
 *     group is killed. While the child lives the exit frame says "alive" and
 *     the next header is awaited; once it ended (killed, exited, OOM) this
 *     process exits after the cell's frames. End of stdin between cells
 *     ends the session without a frame.
 *   control, in a session: the line "interrupt\n" while a cell runs (its
 *     client left) interrupts it as its deadline would, and the exit frame
 *     says "interrupted". SIGINT is sent again every INTERRUPT_REPEAT_MS
 *     of the grace, for a child that had not yet entered the user's code
 *     (where SIGINT is ignored) when it came. Between cells the line is
 *     skipped: it crossed the end of its cell.
 *   flags (optional, default 0): FLAG_CHECK (cells only) says that the
 *     header has an eighth field, <check_length>, and that <check_length>
 *     bytes of policy check request come before the body (see "The policy
 *     checker" below). FLAG_STREAM asks for the output as it
 *     arrives, besides the frames at the end: ostream and estream frames
 *     (the bytes kept under the caps, in order, at most every
 *     STREAM_FLUSH_MS, all of them before the stdout frame, so that they add
 *     up to it) and the child's event messages as event frames, passed on
 *     uninterpreted as they arrive, within outputs_cap bytes per execution.
 * stdout (frames): "PYEXEC1 <kind> <length>\n" <payload> "\n", kinds:
 *     ready    the child's ready message (written before any user code)
 *     stdout   the first stdout_cap bytes the child wrote on fd 1
 *     stderr   the first stderr_cap bytes it wrote on fd 2
 *     ostream  streaming: the next bytes of those stdout bytes, as they come
 *     estream  streaming: the same for stderr
 *     event    streaming: one event message of the child's (untrusted)
 *     report   the child's report, when it arrived whole (untrusted JSON)
 *     outputs  the child's rich outputs, when whole and within outputs_cap
 *     validation  a cell's policy check: the checker's answer (FLAG_CHECK)
 *     exit     how the child ended, JSON built here from numbers only; last
 *     error    the request could not be served (then nothing else follows)
 * The child's messages on its result pipe: "<kind> <length>\n" <payload>.
 *
 * The policy checker (session mode: "supervisor --policy <rules as JSON>"):
 * a session's child runs cell after cell of user code, so it cannot be
 * trusted to check the next one (earlier cells can rebind what a checker in
 * that process relies on). With --policy, this process also starts
 * validate.py --checker, a second interpreter that never runs user code: it
 * is started before any, makes itself non-dumpable before it says ready,
 * holds only its stdin and stdout pipes to us, and checks each request line
 * we pass it, answering a "pass" or "refuse" frame. For a FLAG_CHECK cell we
 * pass it the check request (one line), forward its answer as a validation
 * frame, then hand the body to the child only if it passed; a refused
 * cell's body is read and dropped, and an exit frame with state "refused"
 * follows. A checker that does not answer within CHECK_TIMEOUT_MS, or
 * answers anything else, ends the session with an error frame: code is
 * never run unchecked. It costs a pipe round trip (~0.05 ms) where asking
 * the service's validator costs another round trip through the engine.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FRAME_MAGIC "PYEXEC1"
/* The child's interpreter and script; tests build with others (-D). */
#ifndef CHILD_PYTHON
#define CHILD_PYTHON "/usr/bin/python3"
#endif
#ifndef CHILD_SCRIPT
#define CHILD_SCRIPT "/opt/pyexec/child.py"
#endif
#ifndef CHECKER_SCRIPT
#define CHECKER_SCRIPT "/opt/pyexec/validate.py"
#endif

/* The child's descriptors, as child.py expects them. */
enum { CHILD_RES_FD = 3, CHILD_REQ_FD = 4, CHILD_OUT_FD = 5, CHILD_ERR_FD = 6 };

/* Caps on what is accepted from the service and from the child. */
/* A request carries up to 64 MiB of input files (base64) besides the code. */
#define MAX_REQUEST_BYTES (96u << 20)
#define MAX_REPORT_BYTES (1u << 20)
#define MAX_READY_BYTES (64u << 10)
#define MAX_OUTPUTS_CAP (256u << 20)
#define MAX_STREAM_CAP (64u << 20)
#define MAX_TIMEOUT_MS (3600u * 1000)
/* A message header from the child is shorter than this. */
#define MAX_MSG_HEADER 64
/* How long pipes are still drained once the child exited or reported
 * (an orphan of the user's may still hold them). */
#define DRAIN_GRACE_MS 200
/* How often the child's exit is polled for while it runs. */
#define POLL_MS 50
/* In a session, how long a child interrupted at the deadline (SIGINT) has
 * to report before its process group is killed and the session ends. */
#define INTERRUPT_GRACE_MS 1000
/* A cell interrupted by the service gets SIGINT this often in its grace. */
#define INTERRUPT_REPEAT_MS 100
/* The service's control line during a session's cell (see the top). */
#define CONTROL_INTERRUPT "interrupt\n"
/* The longest request header line (both modes). */
#define MAX_HEADER_BYTES 128
/* The request header's flags: stream the output as it arrives; a policy
 * check request precedes the body. */
#define FLAG_STREAM 1
#define FLAG_CHECK 2
/* A check request line is at most this long (validate.py's
 * MAX_REQUEST_BYTES), its answer at most MAX_CHECK_ANSWER. */
#define MAX_CHECK_BYTES (1u << 20)
#define MAX_CHECK_ANSWER (1u << 20)
/* How long the checker has to start, and to answer one request. */
#define CHECKER_START_MS 30000
#define CHECK_TIMEOUT_MS 10000
/* Streaming: output is passed on at most this often (coalesced). */
#define STREAM_FLUSH_MS 50

/* ------------------------------------------------------------ utilities */

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* write_all writes every byte of the iovecs to fd; false on error. */
static bool write_all(int fd, struct iovec *iov, int n) {
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return true;
}

/* write_frame writes one frame on the container's stdout. */
static void write_frame(const char *kind, const char *data, size_t len) {
    char header[64];
    int h = snprintf(header, sizeof header, FRAME_MAGIC " %s %zu\n", kind, len);
    struct iovec iov[3] = {
        {header, (size_t)h},
        {(void *)data, len},
        {"\n", 1},
    };
    write_all(1, iov, 3);
}

/* A batch holds the final frames of one answer, written with one writev, so
 * that they reach the service in one piece rather than one write each. */
#define BATCH_FRAMES 6
struct batch {
    struct iovec iov[3 * BATCH_FRAMES];
    char headers[BATCH_FRAMES][64];
    int n, frames;
};

static void batch_add(struct batch *b, const char *kind, const char *data, size_t len) {
    char *h = b->headers[b->frames++];
    int k = snprintf(h, 64, FRAME_MAGIC " %s %zu\n", kind, len);
    b->iov[b->n++] = (struct iovec){h, (size_t)k};
    b->iov[b->n++] = (struct iovec){(void *)data, len};
    b->iov[b->n++] = (struct iovec){"\n", 1};
}

static void batch_flush(struct batch *b) {
    write_all(1, b->iov, b->n);
    b->n = b->frames = 0;
}

/* fail answers with an error frame; msg is plain ASCII without quotes. */
static int fail(const char *msg) {
    char body[256];
    int n = snprintf(body, sizeof body, "{\"message\":\"%s\"}", msg);
    write_frame("error", body, (size_t)n);
    return 2;
}

/* buf keeps the first limit bytes fed to it and counts them all. */
struct buf {
    char *data;
    size_t len, cap, limit;
    uint64_t total;
    bool nomem;
};

static void buf_feed(struct buf *b, const char *p, size_t n) {
    b->total += n;
    size_t room = b->limit > b->len ? b->limit - b->len : 0;
    if (n > room)
        n = room;
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        if (cap > b->limit)
            cap = b->limit;
        char *d = realloc(b->data, cap);
        if (d == NULL) {
            b->nomem = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* ------------------------------------------------------------ streaming */

/* While an execution or cell streams (FLAG_STREAM): its capture buffers and
 * pipes (-1 once closed), how much of each has been passed on, and the
 * event bytes passed on. */
static struct {
    bool on;
    struct buf *out, *err;
    const int *out_fd, *err_fd;
    size_t out_sent, err_sent;
    int64_t last_flush;
    uint64_t event_bytes, event_budget;
    /* An event has begun to arrive: what was printed before it has been
     * passed on, and what comes while it arrives waits for it. */
    bool holding;
} streaming;

static const int stream_closed_fd = -1;

static void stream_start(bool on, struct buf *out, struct buf *err, uint64_t event_budget) {
    streaming.on = on;
    streaming.out = out;
    streaming.err = err;
    streaming.out_fd = streaming.err_fd = &stream_closed_fd;
    streaming.out_sent = streaming.err_sent = 0;
    streaming.last_flush = 0; /* the first output goes at once */
    streaming.event_bytes = 0;
    streaming.event_budget = event_budget;
    streaming.holding = false;
}

/* stream_fds names the capture pipes' descriptors as the loop reading them
 * keeps them. */
static void stream_fds(const int *out_fd, const int *err_fd) {
    streaming.out_fd = out_fd;
    streaming.err_fd = err_fd;
}

static void stream_stop(void) {
    streaming.on = false;
    streaming.holding = false;
    streaming.out = streaming.err = NULL;
    stream_fds(&stream_closed_fd, &stream_closed_fd);
}

/* stream_catch_up reads what the capture pipes hold now (a few reads at
 * most, without waiting). Called before each read of the result pipe, it
 * takes in the output printed before an event, and nothing printed after
 * it: the child flushes its output before it sends an event, and prints
 * nothing more until the result pipe has been read empty
 * (runner_child.send_event). An end of file is left for the reading loop
 * to see. */
static void stream_catch_up(void) {
    static char chunk[65536];
    for (int round = 0; round < 4; round++) {
        struct pollfd fds[2] = {{*streaming.out_fd, POLLIN, 0}, {*streaming.err_fd, POLLIN, 0}};
        int n = poll(fds, 2, 0);
        if (n <= 0)
            return;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & POLLIN))
                continue;
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got > 0)
                buf_feed(i == 0 ? streaming.out : streaming.err, chunk, (size_t)got);
        }
    }
}

static bool stream_pending(void) {
    return streaming.on && (streaming.out->len > streaming.out_sent || streaming.err->len > streaming.err_sent);
}

/* stream_flush passes on what the capture buffers gained since the last
 * flush: only bytes under the caps, which the final frames carry too. */
static void stream_flush(void) {
    if (!streaming.on)
        return;
    if (streaming.out->len > streaming.out_sent) {
        write_frame("ostream", streaming.out->data + streaming.out_sent, streaming.out->len - streaming.out_sent);
        streaming.out_sent = streaming.out->len;
    }
    if (streaming.err->len > streaming.err_sent) {
        write_frame("estream", streaming.err->data + streaming.err_sent, streaming.err->len - streaming.err_sent);
        streaming.err_sent = streaming.err->len;
    }
    streaming.last_flush = now_us();
}

/* stream_tick flushes when output waits and the last flush is
 * STREAM_FLUSH_MS old; it returns how long the next poll may wait at most
 * (ms), or -1 for no bound. */
static int64_t stream_tick(void) {
    if (!stream_pending() || streaming.holding)
        return -1;
    int64_t due = streaming.last_flush + STREAM_FLUSH_MS * 1000 - now_us();
    if (due <= 0) {
        stream_flush();
        return -1;
    }
    return (due + 999) / 1000;
}

/* ------------------------------------------------- the child's messages */

/* A message received whole on the result pipe (or, in a cell, dropped
 * because it was over its cap: seen, with dropped set and no payload). */
struct msg {
    bool seen, dropped;
    size_t off, len;
};

/* msgs parses "<kind> <length>\n" <payload> messages as they arrive. Only
 * the first message of each kind counts. In a cell (cells set), the pipe
 * outlives the message: a message that is not wanted or is over its cap is
 * skipped as it arrives rather than kept, so the report and outputs that
 * count always fit and the cell can end without the pipe's end. */
struct msgs {
    struct buf b;
    size_t scan; /* where the next header starts */
    bool malformed;
    struct msg ready, report, outputs;
    bool cells;
    size_t outputs_cap; /* cells: the largest outputs message kept */
    uint64_t skip;      /* cells: bytes of a dropped message still to come */
};

/* overflow: more arrived than the buffer keeps. */
static bool msgs_overflow(const struct msgs *m) { return m->b.total > m->b.len || m->b.nomem; }

static void msgs_scan(struct msgs *m) {
    while (!m->malformed && m->scan < m->b.len) {
        const char *start = m->b.data + m->scan;
        size_t avail = m->b.len - m->scan;
        const char *nl = memchr(start, '\n', avail < MAX_MSG_HEADER ? avail : MAX_MSG_HEADER);
        if (nl == NULL) {
            if (avail >= MAX_MSG_HEADER)
                m->malformed = true;
            return;
        }
        const char *sp = memchr(start, ' ', (size_t)(nl - start));
        if (sp == NULL || sp == start || sp + 1 == nl) {
            m->malformed = true;
            return;
        }
        uint64_t size = 0;
        for (const char *p = sp + 1; p < nl; p++) {
            if (*p < '0' || *p > '9' || size > (uint64_t)1 << 40) {
                m->malformed = true;
                return;
            }
            size = size * 10 + (uint64_t)(*p - '0');
        }
        size_t hdr = (size_t)(nl + 1 - start);
        size_t klen = (size_t)(sp - start);
        if (klen == 5 && memcmp(start, "event", 5) == 0) {
            /* Streaming: passed on whole as it arrives, within the budget;
             * otherwise dropped. Either way it leaves the buffer, so it
             * takes no room from the report and the outputs. */
            uint64_t room = m->b.limit - m->scan - hdr;
            bool keep = streaming.on && size <= room && streaming.event_bytes + size <= streaming.event_budget;
            size_t here = avail - hdr;
            if (keep && !streaming.holding) {
                /* What the child printed before the event was read before
                 * it (stream_catch_up, before each read of the result
                 * pipe): it goes first; what comes while the event arrives
                 * waits for it. */
                stream_flush();
                streaming.holding = true;
            }
            if (keep && size > here)
                return; /* not whole yet */
            if (keep) {
                write_frame("event", start + hdr, (size_t)size);
                streaming.event_bytes += size;
                streaming.holding = false;
            }
            size_t gone = size <= here ? hdr + (size_t)size : avail;
            if (size <= here)
                memmove(m->b.data + m->scan, start + gone, avail - gone);
            else
                m->skip = size - here;
            m->b.len -= gone;
            m->b.total -= gone; /* what left the buffer is no overflow */
            continue;
        }
        struct msg *slot = NULL;
        if (klen == 5 && memcmp(start, "ready", 5) == 0)
            slot = &m->ready;
        else if (klen == 6 && memcmp(start, "report", 6) == 0)
            slot = &m->report;
        else if (klen == 7 && memcmp(start, "outputs", 7) == 0)
            slot = &m->outputs;
        if (m->cells) {
            uint64_t cap = slot == &m->report ? MAX_REPORT_BYTES : slot == &m->outputs ? m->outputs_cap : 0;
            uint64_t room = m->b.limit - m->scan - hdr;
            if (slot == NULL || slot == &m->ready || slot->seen || size > cap || size > room) {
                /* Dropped: what of it is here goes, the rest is skipped. */
                if (slot != NULL && !slot->seen) {
                    slot->seen = slot->dropped = true;
                    slot->len = (size_t)size;
                }
                size_t here = avail - hdr;
                if (size <= here) {
                    memmove(m->b.data + m->scan, start + hdr + size, here - (size_t)size);
                    m->b.len -= hdr + (size_t)size;
                } else {
                    m->skip = size - here;
                    m->b.len = m->scan;
                }
                continue;
            }
        }
        if (size > avail - hdr)
            return; /* not whole yet */
        if (slot != NULL && !slot->seen) {
            slot->seen = true;
            slot->off = m->scan + hdr;
            slot->len = (size_t)size;
        }
        m->scan += hdr + (size_t)size;
    }
}

static void msgs_feed(struct msgs *m, const char *p, size_t n) {
    while (n > 0) {
        if (m->malformed) {
            if (!m->cells)
                buf_feed(&m->b, p, n); /* counted, as an overflow may be */
            return;
        }
        if (m->skip > 0) {
            size_t k = m->skip < n ? (size_t)m->skip : n;
            m->skip -= k;
            p += k;
            n -= k;
            continue;
        }
        /* Feed no more than fits, so no byte is lost before the scan has
         * decided whether to keep or skip the message it belongs to. */
        size_t room = m->b.limit > m->b.len ? m->b.limit - m->b.len : 0;
        size_t k = n < room ? n : room;
        if (k == 0) {
            if (m->cells)
                m->malformed = true; /* cannot happen: kept messages fit */
            else
                buf_feed(&m->b, p, n); /* single-shot: counted, the overflow */
            return;
        }
        buf_feed(&m->b, p, k);
        if (m->b.nomem) {
            if (m->cells)
                m->malformed = true;
            return;
        }
        p += k;
        n -= k;
        msgs_scan(m);
    }
}

/* complete: the report and the outputs have both arrived (and, in a cell,
 * the rest of a dropped message too, so that the next cell starts with its
 * own messages). */
static bool msgs_complete(const struct msgs *m) { return m->report.seen && m->outputs.seen && m->skip == 0; }

/* --------------------------------------------------------------- cgroup */

/* cgroup_value reads "<key> <n>" from a flat-keyed file, or a lone number
 * when key is NULL; -1 when absent. */
static int64_t cgroup_value(const char *path, const char *key) {
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    char line[256];
    int64_t v = -1;
    size_t klen = key ? strlen(key) : 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (key == NULL) {
            v = strtoll(line, NULL, 10);
            break;
        }
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            v = strtoll(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* Count of OOM kills in this container's memory cgroup (v1 or v2). */
static int64_t oom_kills(void) {
    int64_t v = cgroup_value("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill");
    if (v < 0)
        v = cgroup_value("/sys/fs/cgroup/memory.events", "oom_kill");
    return v < 0 ? 0 : v;
}

/* Peak memory use of the whole container in bytes, or -1. */
static int64_t peak_memory(void) {
    int64_t v = cgroup_value("/sys/fs/cgroup/memory/memory.max_usage_in_bytes", NULL);
    if (v < 0)
        v = cgroup_value("/sys/fs/cgroup/memory.peak", NULL);
    return v;
}

/* Current memory use of the whole container in bytes, or -1. */
static int64_t current_memory(void) {
    int64_t v = cgroup_value("/sys/fs/cgroup/memory/memory.usage_in_bytes", NULL);
    if (v < 0)
        v = cgroup_value("/sys/fs/cgroup/memory.current", NULL);
    return v;
}

/* ------------------------------------------------------------ the child */

struct child {
    pid_t pid;
    int out, err, res, req; /* our ends */
};

/* child_cpu_us is the CPU time the child has used so far: its own (all its
 * threads, to the nanosecond, from its process CPU clock) plus that of the
 * children it waited for (from /proc, in clock ticks); -1 when unknown (it
 * has exited). Sampled when the request arrives and again at the end, so the
 * exit frame counts only what ran for the request, not the preloading. */
static int64_t child_cpu_us(pid_t pid) {
    clockid_t clock;
    struct timespec ts;
    if (clock_getcpuclockid(pid, &clock) != 0 || clock_gettime(clock, &ts) != 0)
        return -1;
    int64_t us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    char path[64], stat[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return us;
    ssize_t n = read(fd, stat, sizeof stat - 1);
    close(fd);
    if (n <= 0)
        return us;
    stat[n] = '\0';
    /* After the command's closing parenthesis: state (field 3), ...,
     * cutime (16), cstime (17). */
    char *p = strrchr(stat, ')');
    long ticks = sysconf(_SC_CLK_TCK);
    if (p == NULL || ticks <= 0)
        return us;
    p++;
    int64_t children = 0;
    for (int field = 3; field <= 17; field++) {
        char *end;
        while (*p == ' ')
            p++;
        long long v = strtoll(p, &end, 10);
        if (field >= 16 && end != p)
            children += v;
        p = strchr(p, ' ');
        if (p == NULL)
            break;
    }
    return us + children * 1000000 / ticks;
}

static void kill_child(pid_t pid) {
    kill(-pid, SIGKILL); /* its process group (it called setsid) */
    kill(pid, SIGKILL);
}

/* child_exec runs in the forked child: its own session, /dev/null on 0-2,
 * the four pipe ends on 3-6, nothing else, then the interpreter. */
static void child_exec(int res_w, int req_r, int out_w, int err_w) {
    if (setsid() < 0)
        _exit(71);
    signal(SIGPIPE, SIG_DFL);
    /* Ignored from the start (Python then installs no handler of its own):
     * a session's child turns SIGINT into a KeyboardInterrupt only while
     * the user's code runs, so an interrupt that comes before that, even
     * before the first cell, cannot end it. */
    signal(SIGINT, SIG_IGN);
    int ends[4] = {res_w, req_r, out_w, err_w};
    int high[4];
    for (int i = 0; i < 4; i++) {
        high[i] = fcntl(ends[i], F_DUPFD_CLOEXEC, 64);
        if (high[i] < 0)
            _exit(71);
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0)
        _exit(71);
    for (int fd = 0; fd < 3; fd++)
        if (dup2(devnull, fd) < 0)
            _exit(71);
    for (int i = 0; i < 4; i++)
        if (dup2(high[i], CHILD_RES_FD + i) < 0) /* dup2 clears CLOEXEC */
            _exit(71);
    struct rlimit rl;
    int maxfd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = CHILD_ERR_FD + 1; fd < maxfd; fd++)
        close(fd);
    char *argv[] = {"python3", "-I", "-B", CHILD_SCRIPT, NULL};
    extern char **environ;
    execve(CHILD_PYTHON, argv, environ);
    _exit(71);
}

static bool start_child(struct child *c) {
    int out[2], err[2], res[2], req[2];
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(res, O_CLOEXEC) || pipe2(req, O_CLOEXEC))
        return false;
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0)
        child_exec(res[1], req[0], out[1], err[1]);
    close(out[1]);
    close(err[1]);
    close(res[1]);
    close(req[0]);
    /* Our ends of the capture pipes never block a read: besides the loops
     * that poll them, stream_catch_up may have emptied one since. */
    for (int i = 0; i < 2; i++) {
        int fd = i == 0 ? out[0] : err[0];
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0)
            fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
    c->pid = pid;
    c->out = out[0];
    c->err = err[0];
    c->res = res[0];
    c->req = req[1];
    return true;
}

/* wait_ready reads the child's messages until its ready message is whole;
 * false when the child died or sent something else first. */
static bool wait_ready(struct child *c, struct msgs *m) {
    char chunk[4096];
    while (!m->ready.seen) {
        if (m->malformed || msgs_overflow(m) || m->report.seen || m->outputs.seen)
            return false;
        ssize_t n = read(c->res, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        msgs_feed(m, chunk, (size_t)n);
    }
    return true;
}

/* ---------------------------------------------------------- the request */

struct request {
    bool cell;   /* a session's cell ("cell"), else single-shot ("run") */
    bool stream; /* FLAG_STREAM */
    int64_t timeout_ms;
    size_t stdout_cap, stderr_cap, outputs_cap, length;
    size_t check_length; /* FLAG_CHECK: the check request's length, else 0 */
};

/* parse_request_header parses
 * "<run|cell> <timeout_ms> <out> <err> <outputs> <len>[ <flags>[ <check_len>]]\n":
 * plain decimal numbers, single spaces, check_len exactly when FLAG_CHECK. */
static bool parse_request_header(const char *line, struct request *r) {
    bool cell = strncmp(line, "cell ", 5) == 0;
    if (!cell && strncmp(line, "run ", 4) != 0)
        return false;
    const char *p = line + (cell ? 4 : 3);
    unsigned long long v[7] = {0};
    int n = 0;
    while (*p == ' ' && n < 7) {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        char *end;
        errno = 0;
        v[n++] = strtoull(p, &end, 10);
        if (errno != 0)
            return false;
        p = end;
    }
    if (n < 5 || p[0] != '\n' || p[1] != '\0')
        return false;
    unsigned long long t = v[0], so = v[1], se = v[2], oc = v[3], len = v[4], flags = v[5], check = v[6];
    if (flags & ~(unsigned long long)(FLAG_STREAM | FLAG_CHECK))
        return false;
    bool checked = (flags & FLAG_CHECK) != 0;
    if (checked != (n == 7) || (checked && (!cell || check == 0 || check > MAX_CHECK_BYTES)))
        return false;
    if (t == 0 || t > MAX_TIMEOUT_MS || so > MAX_STREAM_CAP || se > MAX_STREAM_CAP || oc > MAX_OUTPUTS_CAP ||
        len == 0 || len > MAX_REQUEST_BYTES)
        return false;
    r->cell = cell;
    r->timeout_ms = (int64_t)t;
    r->stdout_cap = so;
    r->stderr_cap = se;
    r->outputs_cap = oc;
    r->length = len;
    r->stream = (flags & FLAG_STREAM) != 0;
    r->check_length = check;
    return true;
}

/* The service's stdin, read through one buffer: a header read may take in
 * bytes past its line (the body, or in a session the next cell), which the
 * body's forwarding then uses first. A body is never read past its end. */
static struct {
    char data[65536];
    size_t off, len;
} in;

enum { HEADER_OK, HEADER_EOF, HEADER_MISSING, HEADER_LONG, HEADER_BAD };

/* read_header reads one header line from stdin (waiting for it as long as
 * the sandbox sits in the pool, or the session between cells) and parses
 * it. HEADER_EOF: stdin ended before any byte of it. */
static int read_header(struct request *r) {
    char line[MAX_HEADER_BYTES + 2];
    size_t have = 0;
    for (;;) {
        while (in.off < in.len) {
            if (have == MAX_HEADER_BYTES)
                return HEADER_LONG;
            char ch = in.data[in.off++];
            line[have++] = ch;
            if (ch == '\n') {
                line[have] = '\0';
                if (strcmp(line, CONTROL_INTERRUPT) == 0) {
                    have = 0; /* late: its cell has ended */
                    continue;
                }
                return parse_request_header(line, r) ? HEADER_OK : HEADER_BAD;
            }
        }
        in.off = in.len = 0;
        ssize_t n = read(0, in.data, MAX_HEADER_BYTES);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return have == 0 ? HEADER_EOF : HEADER_MISSING;
        in.len = (size_t)n;
    }
}

static const char *header_problem(int h) {
    switch (h) {
    case HEADER_LONG:
        return "request header too long";
    case HEADER_BAD:
        return "bad request header";
    default:
        return "request missing";
    }
}

/* write_child writes to the child's request pipe. Single-shot (deadline
 * < 0): blocking, as the child reads the whole request before it runs
 * anything. In a cell the pipe is non-blocking and the write gives up at
 * the deadline (the user's code of an earlier cell may have stopped the
 * child's reading): the cell then times out as usual. False on error or
 * timeout. */
static bool write_child(int fd, const char *p, size_t n, int64_t deadline) {
    if (deadline < 0) {
        struct iovec iov = {(void *)p, n};
        return write_all(fd, &iov, 1);
    }
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            return false;
        int64_t left = deadline - now_us();
        if (left <= 0)
            return false;
        struct pollfd pfd = {fd, POLLOUT, 0};
        int pr = poll(&pfd, 1, (int)((left + 999) / 1000));
        if (pr < 0 && errno != EINTR)
            return false;
    }
    return true;
}

/* next_input points p at the next n (1..left) bytes of the request from
 * stdin, the buffer's first; false when stdin ended. */
static bool next_input(size_t left, const char **p, size_t *n) {
    if (in.off < in.len) {
        *p = in.data + in.off;
        *n = in.len - in.off < left ? in.len - in.off : left;
        in.off += *n;
        return true;
    }
    for (;;) {
        ssize_t got = read(0, in.data, left < sizeof in.data ? left : sizeof in.data);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        in.off = in.len = 0;
        *p = in.data;
        *n = (size_t)got;
        return true;
    }
}

/* forward_body passes the request's body from stdin to the child (while it
 * takes it: a child that stopped reading is not an error here, its end
 * shows in the exit frame) without holding more than one buffer of it. A
 * cell's body is preceded by its length. */
static const char *forward_body(struct child *c, const struct request *r, int64_t deadline) {
    size_t left = r->length;
    bool open = true;
    if (r->cell) {
        char prefix[32];
        int k = snprintf(prefix, sizeof prefix, "%zu\n", r->length);
        open = write_child(c->req, prefix, (size_t)k, deadline);
    }
    while (left > 0) {
        const char *p;
        size_t n;
        if (!next_input(left, &p, &n))
            return "request truncated";
        if (open)
            open = write_child(c->req, p, n, deadline);
        left -= n;
    }
    return NULL;
}

/* skip_body reads a refused cell's body and drops it; false when stdin
 * ended first. */
static bool skip_body(size_t left) {
    while (left > 0) {
        const char *p;
        size_t n;
        if (!next_input(left, &p, &n))
            return false;
        left -= n;
    }
    return true;
}

/* What stdin holds while a cell runs: nothing yet (or part of a line), an
 * interrupt line (taken), or anything else (left for read_header, which
 * refuses it after the cell) or its end. */
enum { CONTROL_NONE, CONTROL_INTERRUPTED, CONTROL_OVER };

/* take_control takes the interrupt lines at the front of stdin's buffer. */
static int take_control(void) {
    const size_t n = sizeof CONTROL_INTERRUPT - 1;
    bool interrupted = false;
    while (in.len - in.off >= n && memcmp(in.data + in.off, CONTROL_INTERRUPT, n) == 0) {
        in.off += n;
        interrupted = true;
    }
    size_t rest = in.len - in.off;
    if (interrupted)
        return CONTROL_INTERRUPTED;
    if (rest > 0 && (rest >= n || memcmp(in.data + in.off, CONTROL_INTERRUPT, rest) != 0))
        return CONTROL_OVER;
    return CONTROL_NONE;
}

/* read_control reads what stdin has (poll said it is readable) after what
 * its buffer holds; CONTROL_OVER at its end or with the buffer full. */
static int read_control(void) {
    if (in.off > 0) {
        memmove(in.data, in.data + in.off, in.len - in.off);
        in.len -= in.off;
        in.off = 0;
    }
    if (in.len == sizeof in.data)
        return CONTROL_OVER;
    ssize_t got = read(0, in.data + in.len, sizeof in.data - in.len);
    if (got < 0)
        return errno == EINTR || errno == EAGAIN ? CONTROL_NONE : CONTROL_OVER;
    if (got == 0)
        return CONTROL_OVER;
    in.len += (size_t)got;
    return take_control();
}

/* ---------------------------------------------------------- the checker */

/* The policy checker of a session started with --policy: pid -1 without.
 * Its pipes are non-blocking on our side; answer holds its last answer's
 * payload, and pending says that a passed cell's validation frame is yet to
 * be written (with the cell's final frames). */
static struct {
    pid_t pid;
    int in, out;
    char *answer;
    size_t answer_len;
    bool pending;
} checker = {.pid = -1, .in = -1, .out = -1};

enum { CHECK_PASSED, CHECK_REFUSED, CHECK_FAILED };

static bool set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

/* start_checker starts validate.py --checker --policy <policy> in its own
 * process session, its stdin and stdout on our pipes, stderr on /dev/null,
 * nothing else. */
static bool start_checker(const char *policy) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
        return false;
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        if (setsid() < 0)
            _exit(71);
        signal(SIGPIPE, SIG_DFL);
        int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        /* The pipes are above 2: the service's stdin, stdout and stderr
         * are open. dup2 clears CLOEXEC on the copies. */
        if (devnull < 0 || dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(devnull, 2) < 0)
            _exit(71);
        char *argv[] = {"python3", "-I", "-B", CHECKER_SCRIPT, "--checker", "--policy", (char *)policy, NULL};
        extern char **environ;
        execve(CHILD_PYTHON, argv, environ);
        _exit(71);
    }
    close(in[0]);
    close(out[1]);
    checker.pid = pid;
    checker.in = in[1];
    checker.out = out[0];
    return set_nonblock(checker.in) && set_nonblock(checker.out);
}

/* The checker's stdout, read through one buffer so that a frame's header
 * takes one read, not one per byte. */
static struct {
    char data[4096];
    size_t off, len;
} cin;

/* checker_read reads n bytes of the checker's stdout by the deadline. */
static bool checker_read(char *dst, size_t n, int64_t deadline) {
    while (n > 0) {
        if (cin.off < cin.len) {
            size_t k = cin.len - cin.off < n ? cin.len - cin.off : n;
            memcpy(dst, cin.data + cin.off, k);
            cin.off += k;
            dst += k;
            n -= k;
            continue;
        }
        ssize_t got = read(checker.out, cin.data, sizeof cin.data);
        if (got > 0) {
            cin.off = 0;
            cin.len = (size_t)got;
            continue;
        }
        if (got == 0 || (errno != EINTR && errno != EAGAIN))
            return false;
        int64_t left = deadline - now_us();
        if (left <= 0)
            return false;
        struct pollfd pfd = {checker.out, POLLIN, 0};
        if (poll(&pfd, 1, (int)((left + 999) / 1000)) < 0 && errno != EINTR)
            return false;
    }
    return true;
}

/* read_checker_frame reads one frame of the checker's by the deadline: its
 * kind into kind, its payload into checker.answer. */
static bool read_checker_frame(char *kind, size_t kind_cap, int64_t deadline) {
    char line[64];
    size_t have = 0;
    do {
        if (have == sizeof line - 1 || !checker_read(line + have, 1, deadline))
            return false;
    } while (line[have++] != '\n');
    line[have] = '\0';
    char k[16], tail;
    unsigned long long len;
    if (sscanf(line, FRAME_MAGIC " %15s %llu%c", k, &len, &tail) != 3 || tail != '\n' || len > MAX_CHECK_ANSWER)
        return false;
    char *d = realloc(checker.answer, (size_t)len + 1);
    if (d == NULL)
        return false;
    checker.answer = d;
    if (!checker_read(d, (size_t)len + 1, deadline) || d[len] != '\n')
        return false;
    checker.answer_len = (size_t)len;
    snprintf(kind, kind_cap, "%s", k);
    return true;
}

/* checker_ready waits for the checker's ready frame. */
static bool checker_ready(void) {
    char kind[16];
    return read_checker_frame(kind, sizeof kind, now_us() + (int64_t)CHECKER_START_MS * 1000) &&
           strcmp(kind, "ready") == 0;
}

/* check_cell reads the cell's check request from stdin, has the checker
 * answer it, and keeps the answer for the validation frame: CHECK_PASSED
 * (written with the cell's frames), CHECK_REFUSED, or CHECK_FAILED with why. */
static int check_cell(const struct request *r, const char **why) {
    size_t len = r->check_length;
    char *line = malloc(len);
    if (line == NULL) {
        *why = "out of memory";
        return CHECK_FAILED;
    }
    for (size_t have = 0; have < len;) {
        const char *p;
        size_t n;
        if (!next_input(len - have, &p, &n)) {
            free(line);
            *why = "request truncated";
            return CHECK_FAILED;
        }
        memcpy(line + have, p, n);
        have += n;
    }
    /* One line, so that the checker's answers stay in step. */
    bool one_line = line[len - 1] == '\n' && memchr(line, '\n', len - 1) == NULL;
    int64_t deadline = now_us() + (int64_t)CHECK_TIMEOUT_MS * 1000;
    bool sent = one_line && checker.pid > 0 && write_child(checker.in, line, len, deadline);
    free(line);
    char kind[16];
    if (!one_line) {
        *why = "bad check request";
        return CHECK_FAILED;
    }
    if (checker.pid < 0) {
        *why = "this sandbox has no policy checker";
        return CHECK_FAILED;
    }
    if (!sent || !read_checker_frame(kind, sizeof kind, deadline)) {
        *why = "the policy checker did not answer";
        return CHECK_FAILED;
    }
    if (strcmp(kind, "pass") == 0) {
        checker.pending = true;
        return CHECK_PASSED;
    }
    if (strcmp(kind, "refuse") == 0)
        return CHECK_REFUSED;
    *why = "the policy checker answered out of turn";
    return CHECK_FAILED;
}

/* ------------------------------------------------------------ supervise */

struct outcome {
    bool timed_out, interrupted, reaped;
    int status;
    struct rusage ru;
    int64_t elapsed_us;
    /* The child's CPU time (child_cpu_us) when the request arrived and, if
     * it was not reaped, at the end; -1 when unknown. */
    int64_t cpu_before, cpu_after;
};

static void reap(struct child *c, struct outcome *o, int flags) {
    if (o->reaped)
        return;
    pid_t w;
    do
        w = wait4(c->pid, &o->status, flags, &o->ru);
    while (w < 0 && errno == EINTR);
    if (w == c->pid)
        o->reaped = true;
}

/* supervise captures the child's pipes until it has exited or reported and
 * they are drained, or the deadline passes. */
static void supervise(struct child *c, const struct request *r, struct buf *out, struct buf *err,
                       struct msgs *m, struct outcome *o, int64_t started) {
    struct pollfd fds[3] = {{c->out, POLLIN, 0}, {c->err, POLLIN, 0}, {c->res, POLLIN, 0}};
    struct buf *sinks[3] = {out, err, NULL};
    int open_fds = 3;
    stream_fds(&fds[0].fd, &fds[1].fd);
    int64_t deadline = started + r->timeout_ms * 1000;
    int64_t ended = -1; /* when the child exited or reported */
    static char chunk[65536];

    while (open_fds > 0) {
        int64_t now = now_us();
        reap(c, o, WNOHANG);
        if (!o->reaped && now >= deadline) {
            o->timed_out = true;
            kill_child(c->pid);
            reap(c, o, 0);
        }
        if (o->reaped && ended < 0)
            ended = now_us();
        if (ended >= 0 && now - ended > DRAIN_GRACE_MS * 1000)
            break;
        int64_t wait_ms = DRAIN_GRACE_MS;
        if (ended < 0) {
            wait_ms = (deadline - now + 999) / 1000;
            if (wait_ms > POLL_MS)
                wait_ms = POLL_MS;
        }
        int64_t flush_ms = stream_tick();
        if (flush_ms >= 0 && flush_ms < wait_ms)
            wait_ms = flush_ms;
        int n = poll(fds, 3, (int)wait_ms);
        if (n < 0 && errno != EINTR)
            break;
        for (int k = 0; n > 0 && k < 3; k++) {
            int i = (k + 2) % 3; /* the result pipe first (stream_catch_up) */
            if (fds[i].fd < 0 || fds[i].revents == 0)
                continue;
            if (i == 2 && streaming.on)
                stream_catch_up(); /* what was printed before an event */
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (got > 0) {
                if (sinks[i] != NULL)
                    buf_feed(sinks[i], chunk, (size_t)got);
                else
                    msgs_feed(m, chunk, (size_t)got);
            } else {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
            if (i == 2 && ended < 0 && msgs_complete(m))
                /* The child has reported and waits to be killed: whatever
                 * still holds the pipes (an orphan of the user's) gets the
                 * same grace as after an exit. */
                ended = now_us();
        }
    }
    if (!o->reaped && !msgs_complete(m)) {
        /* All pipes closed (fd juggling by user code) and the child runs
         * on: wait for its exit until the deadline. */
        while (!o->reaped && now_us() < deadline) {
            reap(c, o, WNOHANG);
            if (!o->reaped) {
                struct timespec ts = {0, 500000};
                nanosleep(&ts, NULL);
            }
        }
        if (!o->reaped) {
            o->timed_out = true;
            kill_child(c->pid);
            reap(c, o, 0);
        }
    } else if (!o->reaped) {
        /* It reported and closed its pipes; its exit is not waited for
         * (tearing down an address space takes ms in a VM): the process
         * group is killed once the frames are out. */
        reap(c, o, WNOHANG);
    }
    o->elapsed_us = now_us() - started;
    for (int i = 0; i < 3; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
}

/* drain reads what the child's stdout and stderr pipes hold now, without
 * waiting for more (a cell's child keeps them open), for at most the drain
 * grace (a thread of the user's may write on and on). */
static void drain(struct child *c, struct buf *out, struct buf *err) {
    static char chunk[65536];
    int64_t until = now_us() + DRAIN_GRACE_MS * 1000;
    while (now_us() < until) {
        struct pollfd fds[2] = {{c->out, POLLIN, 0}, {c->err, POLLIN, 0}};
        int n = poll(fds, 2, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || fds[i].revents == 0)
                continue;
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (got > 0) {
                buf_feed(i == 0 ? out : err, chunk, (size_t)got);
            } else {
                close(fds[i].fd);
                *(i == 0 ? &c->out : &c->err) = -1;
            }
        }
    }
}

/* supervise_cell captures the child's pipes for one cell of a session until
 * the child has reported (it lives on: the pipes are drained of what it
 * wrote before, and stay open), or it has ended and they are drained. At the
 * deadline, or at the service's interrupt line on stdin, the child gets
 * SIGINT, and INTERRUPT_GRACE_MS later, if it still has not reported,
 * SIGKILL for its process group. A pipe that ends stays closed for the rest
 * of the session. */
static void supervise_cell(struct child *c, const struct request *r, struct buf *out, struct buf *err,
                           struct msgs *m, struct outcome *o, int64_t started) {
    int *ends[3] = {&c->out, &c->err, &c->res};
    struct buf *sinks[3] = {out, err, NULL};
    stream_fds(&c->out, &c->err);
    int64_t deadline = started + r->timeout_ms * 1000;
    int64_t kill_at = -1;   /* once interrupted: when the grace ends */
    int64_t next_int = -1;  /* interrupted by the service: the next SIGINT */
    int64_t ended = -1;     /* when the child was reaped */
    int control = take_control(); /* an interrupt may have come with the body */
    static char chunk[65536];

    for (;;) {
        int64_t now = now_us();
        reap(c, o, WNOHANG);
        if (!o->reaped && msgs_complete(m)) {
            drain(c, out, err);
            break;
        }
        bool asked = control == CONTROL_INTERRUPTED;
        if (asked)
            control = CONTROL_NONE;
        if (!o->reaped && kill_at < 0 && (now >= deadline || asked)) {
            if (now >= deadline)
                o->timed_out = true;
            else
                o->interrupted = true;
            kill(c->pid, SIGINT);
            kill_at = now + INTERRUPT_GRACE_MS * 1000;
            if (o->interrupted)
                next_int = now + INTERRUPT_REPEAT_MS * 1000;
        } else if (!o->reaped && next_int >= 0 && now >= next_int && now < kill_at) {
            kill(c->pid, SIGINT);
            next_int = now + INTERRUPT_REPEAT_MS * 1000;
        } else if (!o->reaped && kill_at >= 0 && now >= kill_at) {
            kill_child(c->pid);
            reap(c, o, 0);
        }
        if (o->reaped && ended < 0)
            ended = now_us();
        bool open = c->out >= 0 || c->err >= 0 || c->res >= 0;
        if (ended >= 0 && (!open || now - ended > DRAIN_GRACE_MS * 1000))
            break;
        int64_t wait_ms = DRAIN_GRACE_MS;
        if (ended < 0) {
            int64_t next = kill_at >= 0 ? kill_at : deadline;
            if (next_int >= 0 && next_int < next)
                next = next_int;
            wait_ms = (next - now + 999) / 1000;
            if (wait_ms > POLL_MS)
                wait_ms = POLL_MS;
            if (wait_ms < 0)
                wait_ms = 0;
        }
        int64_t flush_ms = stream_tick();
        if (flush_ms >= 0 && flush_ms < wait_ms)
            wait_ms = flush_ms;
        struct pollfd fds[4] = {{c->out, POLLIN, 0},
                                {c->err, POLLIN, 0},
                                {c->res, POLLIN, 0},
                                {control == CONTROL_OVER ? -1 : 0, POLLIN, 0}};
        int n = poll(fds, 4, (int)wait_ms);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && fds[3].revents != 0)
            control = read_control();
        for (int k = 0; n > 0 && k < 3; k++) {
            int i = (k + 2) % 3; /* the result pipe first (stream_catch_up) */
            if (fds[i].fd < 0 || fds[i].revents == 0)
                continue;
            if (i == 2 && streaming.on)
                stream_catch_up(); /* what was printed before an event */
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (got > 0) {
                if (sinks[i] != NULL)
                    buf_feed(sinks[i], chunk, (size_t)got);
                else
                    msgs_feed(m, chunk, (size_t)got);
            } else {
                close(fds[i].fd);
                *ends[i] = -1;
            }
        }
    }
    o->elapsed_us = now_us() - started;
}

/* write_exit writes the exit frame: numbers and fixed words only. alive:
 * a session's child that reported and waits for the next cell. */
static void write_exit(struct batch *bt, char *body, size_t body_cap, const struct outcome *o, const struct buf *out,
                       const struct buf *err, const struct msgs *m, bool oom, bool outputs_overflow, bool alive) {
    const char *state = alive ? "alive" : "reported";
    int code = 0, sig = 0;
    int64_t cpu_us = o->cpu_after; /* CPU since the request; -1: unknown */
    if (o->reaped) {
        cpu_us = (int64_t)o->ru.ru_utime.tv_sec * 1000000 + o->ru.ru_utime.tv_usec +
                 (int64_t)o->ru.ru_stime.tv_sec * 1000000 + o->ru.ru_stime.tv_usec;
    }
    if (cpu_us >= 0 && o->cpu_before >= 0)
        cpu_us = cpu_us > o->cpu_before ? cpu_us - o->cpu_before : 0;
    else
        cpu_us = -1;
    if (o->reaped) {
        if (WIFSIGNALED(o->status)) {
            state = "signaled";
            sig = WTERMSIG(o->status);
        } else {
            state = "exited";
            code = WEXITSTATUS(o->status);
        }
    }
    int n = snprintf(body, body_cap,
                     "{\"state\":\"%s\",\"exit_code\":%d,\"signal\":%d,\"timed_out\":%s,\"interrupted\":%s,"
                     "\"execution_us\":%" PRId64 ",\"cpu_us\":%" PRId64 ",\"peak_memory_bytes\":%" PRId64
                     ",\"memory_bytes\":%" PRId64 ",\"oom_killed\":%s,\"stdout_bytes\":%" PRIu64
                     ",\"stderr_bytes\":%" PRIu64 ",\"outputs_overflow\":%s,\"report_malformed\":%s}",
                     state, code, sig, o->timed_out ? "true" : "false", o->interrupted ? "true" : "false", o->elapsed_us, cpu_us, peak_memory(),
                     current_memory(), oom ? "true" : "false", out->total, err->total,
                     outputs_overflow ? "true" : "false", m->malformed ? "true" : "false");
    batch_add(bt, "exit", body, (size_t)n);
}

/* write_result writes the frames of one execution or cell, exit last. */
static void write_result(const struct outcome *o, const struct buf *out, const struct buf *err,
                         const struct msgs *m, const struct request *r, bool oom, bool alive) {
    stream_flush(); /* the streamed chunks add up to the stdout frame */
    stream_stop();
    struct batch bt = {.n = 0};
    char exit_body[640];
    if (checker.pending) /* the cell's check, which it passed */
        batch_add(&bt, "validation", checker.answer, checker.answer_len);
    checker.pending = false;
    batch_add(&bt, "stdout", out->data, out->len);
    batch_add(&bt, "stderr", err->data, err->len);
    if (m->report.seen && !m->report.dropped && m->report.len <= MAX_REPORT_BYTES)
        batch_add(&bt, "report", m->b.data + m->report.off, m->report.len);
    /* The outputs are dropped when more arrived than the pipe's cap or they
     * alone exceed theirs. */
    bool outputs_overflow = m->outputs.dropped || (!m->cells && msgs_overflow(m)) ||
                            (m->outputs.seen && m->outputs.len > r->outputs_cap);
    if (m->outputs.seen && !outputs_overflow)
        batch_add(&bt, "outputs", m->b.data + m->outputs.off, m->outputs.len);
    write_exit(&bt, exit_body, sizeof exit_body, o, out, err, m, oom, outputs_overflow, alive);
    batch_flush(&bt);
}

/* write_refused answers a cell the checker refused: its validation frame
 * and an exit frame with state "refused" (the child never saw the cell). */
static void write_refused(void) {
    struct batch bt = {.n = 0};
    char body[128];
    int n = snprintf(body, sizeof body, "{\"state\":\"refused\",\"memory_bytes\":%" PRId64 "}", current_memory());
    batch_add(&bt, "validation", checker.answer, checker.answer_len);
    batch_add(&bt, "exit", body, (size_t)n);
    batch_flush(&bt);
}

/* run_cell hands one cell's body to the child and writes its frames; false
 * once the child has ended (or the request could not be read: why). */
static bool run_cell(struct child *c, const struct request *r, const char **why) {
    int64_t oom_before = oom_kills();
    struct outcome o = {.cpu_before = child_cpu_us(c->pid), .cpu_after = -1};
    /* The deadline runs once the request is in (a large one takes a
     * while to arrive); passing it on may take the timeout at most. */
    int64_t timeout_us = r->timeout_ms * 1000;
    int64_t fwd_deadline = now_us() + timeout_us;
    *why = forward_body(c, r, fwd_deadline);
    if (*why != NULL)
        return false;
    int64_t started = now_us();
    if (started >= fwd_deadline)
        started = fwd_deadline - timeout_us; /* stalled: the deadline is past */
    /* From here the child is untrusted: everything it sends is bounded. */
    struct msgs m = {.b = {.limit = MAX_REPORT_BYTES + r->outputs_cap + 2 * MAX_MSG_HEADER},
                     .cells = true,
                     .outputs_cap = r->outputs_cap};
    struct buf out = {.limit = r->stdout_cap}, err = {.limit = r->stderr_cap};
    stream_start(r->stream, &out, &err, r->outputs_cap);
    supervise_cell(c, r, &out, &err, &m, &o, started);
    bool alive = !o.reaped;
    if (alive)
        o.cpu_after = child_cpu_us(c->pid);
    write_result(&o, &out, &err, &m, r, oom_kills() > oom_before, alive);
    free(out.data);
    free(err.data);
    free(m.b.data);
    return alive;
}

/* session serves cells until the child ends or stdin does; r is the first
 * cell's header, already read. A cell with a check request runs only if
 * the checker passes it. */
static int session(struct child *c, struct request *r) {
    /* The request pipe outlives a cell: writes to it must not block past a
     * deadline. */
    if (!set_nonblock(c->req)) {
        kill_child(c->pid);
        return fail("the runner process could not be set up");
    }
    for (;;) {
        const char *why = NULL;
        int verdict = r->check_length > 0 ? check_cell(r, &why) : CHECK_PASSED;
        if (verdict == CHECK_REFUSED) {
            if (!skip_body(r->length))
                why = "request truncated";
            else
                write_refused();
        } else if (verdict == CHECK_PASSED && !run_cell(c, r, &why) && why == NULL) {
            kill_child(c->pid); /* whatever of its process group is left */
            return 0;
        }
        if (why != NULL) {
            kill_child(c->pid);
            return fail(why);
        }
        int h = read_header(r);
        if (h == HEADER_EOF) {
            kill_child(c->pid);
            return 0;
        }
        if (h != HEADER_OK || !r->cell) {
            kill_child(c->pid);
            return fail(h != HEADER_OK ? header_problem(h) : "bad request header");
        }
    }
}

int main(int argc, char **argv) {
    /* Keeps same-uid processes (the child) out of /proc/1/{mem,fd,environ}. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);

    /* "--policy <rules>": a session's, with a policy checker. It starts
     * first, so that the child holds none of its pipes (they are
     * close-on-exec besides), and both interpreters start at once. */
    if (argc == 3 && strcmp(argv[1], "--policy") == 0) {
        if (!start_checker(argv[2]))
            return fail("the policy checker could not be started");
    } else if (argc != 1) {
        return fail("usage: supervisor [--policy JSON]");
    }
    struct child c;
    if (!start_child(&c))
        return fail("the runner process could not be started");
    struct msgs m = {.b = {.limit = MAX_READY_BYTES}};
    if (!wait_ready(&c, &m)) {
        kill_child(c.pid);
        return fail("the runner process failed to start");
    }
    if (checker.pid > 0 && !checker_ready()) {
        kill_child(c.pid);
        kill_child(checker.pid);
        return fail("the policy checker failed to start");
    }
    write_frame("ready", m.b.data + m.ready.off, m.ready.len);

    struct request r;
    int h = read_header(&r);
    if (h != HEADER_OK) {
        kill_child(c.pid);
        return fail(header_problem(h));
    }
    if (r.cell) {
        free(m.b.data);
        return session(&c, &r);
    }
    int64_t oom_before = oom_kills();
    struct outcome o = {.cpu_before = child_cpu_us(c.pid), .cpu_after = -1};
    const char *bad = forward_body(&c, &r, -1);
    if (bad != NULL) {
        kill_child(c.pid);
        return fail(bad);
    }
    /* The deadline runs from the request (once it is in: input files take
     * a while to arrive), not from ready. */
    int64_t started = now_us();
    close(c.req);
    c.req = -1;
    /* From here the child is untrusted: everything it sends is bounded. */
    m.b.limit = m.scan + MAX_REPORT_BYTES + r.outputs_cap + 2 * MAX_MSG_HEADER;
    struct buf out = {.limit = r.stdout_cap}, err = {.limit = r.stderr_cap};
    stream_start(r.stream, &out, &err, r.outputs_cap);
    supervise(&c, &r, &out, &err, &m, &o, started);
    if (!o.reaped)
        o.cpu_after = child_cpu_us(c.pid); /* it lingers: its clock still reads */
    write_result(&o, &out, &err, &m, &r, oom_kills() > oom_before, false);
    kill_child(c.pid); /* the process group: leave nothing behind */
    return 0;
}
