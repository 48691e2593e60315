/* SPDX-License-Identifier: MIT */
/*
 * How progress looks.  The library counts (diskimg_progress_*) and calls
 * observe() below, which feeds three outputs (docs/progress.md):
 *
 *  - the -p bar, byte for byte qemu-img's: "    (42.00/100%)\r" on stdout,
 *    redrawn by qemu's rule (when it moved by more than the command's step,
 *    or reads 0 or 100), a last "100.00" when the operation succeeded and
 *    "\n" at the end.  Only when stdout and stderr are both terminals does
 *    it also show the rate and an ETA (nobody scrapes a terminal);
 *  - without -p, one "    (42.00/100%)\n" line on stderr per SIGUSR1;
 *  - with --progress-fd=N, one JSON object per line on descriptor N, and a
 *    last line with the command's exit status (cli_progress_result).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* ------------------------------------------------------ command styles */

/* qemu-img's per-command progress habits: the step below which the bar is
 * not redrawn (qemu_progress_init's min_skip) and whether success prints
 * a last 100 % (so that it often shows twice); compare does not, its loop
 * reaches 100 by itself. */
struct bar_style {
    const char *command;
    float min_skip;
    bool final_print;
};

static const struct bar_style styles[] = {
    { "amend", 1.0f, true },   { "commit", 1.0f, true },  { "compare", 2.0f, false },
    { "convert", 1.0f, true }, { "rebase", 2.0f, true },
};
static const struct bar_style default_style = { NULL, 1.0f, true };

static struct {
    const char *command;
    const struct bar_style *style;
    gint64 started_us;                  /* when the command started */
    char *first_error;                  /* for the result line */
} run = { .style = &default_style };

/* -------------------------------------------------------------- the bar */

static struct {
    float current, last_print;          /* qemu's state, in percent */
    bool decorated;                     /* stdout and stderr are terminals */
    gint64 last_draw_us;
    int last_width;                     /* of the decorated line, to blank it */
} bar;

/* The average rate since the operation started, 0 when not yet known. */
static uint64_t average_rate(const struct diskimg_progress_state *s)
{
    if (s->elapsed_us <= 0 || s->done == 0)
        return 0;
    return (uint64_t)((long double)s->done * G_USEC_PER_SEC / (long double)s->elapsed_us);
}

static float percent_of(const struct diskimg_progress_state *s)
{
    if (s->total == 0)
        return s->event == DISKIMG_PROGRESS_STARTED ? 0.0f : 100.0f;
    float p = (float)(100.0 * (double)s->done / (double)s->total);
    return p > 100.0f ? 100.0f : p;
}

/* "  12.5 MiB/s  ETA 0:01:23", or "" before the rate is known. */
static char *rate_and_eta(const struct diskimg_progress_state *s)
{
    /* the first fraction of a second says little about the rest */
    uint64_t rate = s->elapsed_us >= G_USEC_PER_SEC / 2 ? average_rate(s) : 0;
    if (!rate)
        return g_strdup("");
    g_autofree char *speed = cli_human_size(rate);
    /* rounded up: "0:00:00" only when nothing is left */
    uint64_t bytes_left = s->total > s->done ? s->total - s->done : 0;
    uint64_t left = bytes_left / rate + (bytes_left % rate != 0);
    return g_strdup_printf("  %s/s  ETA %" PRIu64 ":%02u:%02u", speed, left / 3600,
                           (unsigned)(left / 60 % 60), (unsigned)(left % 60));
}

static void draw(const struct diskimg_progress_state *s)
{
    bar.last_print = bar.current;
    bar.last_draw_us = g_get_monotonic_time();
    if (!bar.decorated) {
        printf("    (%3.2f/100%%)\r", (double)bar.current);
        fflush(stdout);
        return;
    }
    g_autofree char *extra = rate_and_eta(s);
    g_autofree char *line = g_strdup_printf("    (%3.2f/100%%)%s", (double)bar.current, extra);
    int width = (int)strlen(line);
    /* blank what a longer previous line left behind */
    printf("%s%*s\r", line, bar.last_width > width ? bar.last_width - width : 0, "");
    bar.last_width = MAX(bar.last_width, width);
    fflush(stdout);
}

/* qemu_progress_print's rule, plus a once-a-second redraw of the ETA. */
static void bar_update(const struct diskimg_progress_state *s, float current)
{
    bar.current = current;
    if (current > bar.last_print + run.style->min_skip || current == 100.0f ||
        current == 0.0f)
        draw(s);
    else if (bar.decorated && g_get_monotonic_time() - bar.last_draw_us >= G_USEC_PER_SEC)
        draw(s);
}

static void bar_event(const struct diskimg_progress_state *s)
{
    switch (s->event) {
    case DISKIMG_PROGRESS_STARTED:
        bar.decorated = isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
        bar.last_print = 0.0f;
        bar.last_width = 0;
        bar_update(s, 0.0f);
        break;
    case DISKIMG_PROGRESS_UPDATED:
        bar_update(s, percent_of(s));
        break;
    case DISKIMG_PROGRESS_COMPLETED:
        if (run.style->final_print)
            bar_update(s, 100.0f);
        break;
    case DISKIMG_PROGRESS_FINISHED:
        printf("\n");
        fflush(stdout);
        break;
    case DISKIMG_PROGRESS_PHASE:
        break;
    }
}

/* ------------------------------------------------------------- SIGUSR1 */

static volatile sig_atomic_t usr1_pending;

static void on_sigusr1(int sig)
{
    (void)sig;
    usr1_pending = 1;
}

/* As qemu-img, SIGUSR1 is caught only once an operation with progress
 * starts (before that it keeps its default action). */
static void catch_sigusr1(void)
{
    static bool caught;
    if (caught)
        return;
    caught = true;
    struct sigaction sa = { 0 };
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
}

static void answer_sigusr1(const struct diskimg_progress_state *s)
{
    if (!usr1_pending)
        return;
    usr1_pending = 0;
    /* qemu-img answers on stderr, so that stdout stays the command's */
    fprintf(stderr, "    (%3.2f/100%%)\n", (double)percent_of(s));
}

/* ------------------------------------------------------ --progress-fd */

/* At most one "progress" line per interval; start, phase, end and result
 * lines are never held back. */
#define FD_INTERVAL_US (G_USEC_PER_SEC / 4)

static struct {
    int fd;                             /* -1: none */
    bool broken;                        /* a write failed: stop writing */
    gint64 last_line_us;
    bool start_pending;                 /* "start" waits for the first phase */
    bool completed;                     /* of the current operation */
    uint64_t done, total;               /* last seen, for the result line */
    unsigned hundredths;
    uint64_t rate;
    char *phase;
} out = { .fd = -1 };

/* write() without dying of SIGPIPE when the reader went away: the signal
 * is blocked for this thread and a SIGPIPE it raised is taken back. */
static bool write_line(int fd, const char *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    bool ok = true;
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ok = false;
            break;
        }
        buf += n;
        len -= (size_t)n;
    }
    int saved = errno;
    if (!ok && saved == EPIPE && !was_pending) {
        const struct timespec zero = { 0 };
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return ok;
}

static void emit(JsonBuilder *b)
{
    g_autoptr(JsonNode) node = json_builder_get_root(b);
    g_autofree char *text = diskimg_render_json(node, false);
    g_autofree char *line = g_strconcat(text, "\n", NULL);
    /* --progress-fd=1: keep the lines in order with what stdio holds */
    if (out.fd == STDOUT_FILENO)
        fflush(stdout);
    if (!write_line(out.fd, line, strlen(line))) {
        out.broken = true;
        fprintf(stderr, "diskimg: warning: --progress-fd=%d: %s; no more progress is written\n",
                out.fd, g_strerror(errno));
    }
}

static void add_int(JsonBuilder *b, const char *key, uint64_t v)
{
    json_builder_set_member_name(b, key);
    json_builder_add_int_value(b, (gint64)MIN(v, (uint64_t)G_MAXINT64));
}

static void add_double(JsonBuilder *b, const char *key, double v)
{
    json_builder_set_member_name(b, key);
    json_builder_add_double_value(b, v);
}

/* The members every line has, in the documented order. */
static JsonBuilder *begin_line(const char *event)
{
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "event");
    json_builder_add_string_value(b, event);
    json_builder_set_member_name(b, "command");
    json_builder_add_string_value(b, run.command ? run.command : "");
    json_builder_set_member_name(b, "phase");
    json_builder_add_string_value(b, out.phase ? out.phase : "");
    add_int(b, "bytes", out.done);
    add_int(b, "total", out.total);
    add_double(b, "percent", out.hundredths / 100.0);
    add_int(b, "rate", out.rate);
    gint64 ms = (g_get_monotonic_time() - run.started_us) / 1000;
    add_double(b, "elapsed", (double)ms / 1000.0);
    return b;
}

static void finish_line(JsonBuilder *b)
{
    json_builder_end_object(b);
    emit(b);
    g_object_unref(b);
    out.last_line_us = g_get_monotonic_time();
}

static unsigned json_hundredths(const struct diskimg_progress_state *s)
{
    if (out.completed)
        return 10000;
    if (s->total == 0)
        return 0;
    uint64_t done = MIN(s->done, s->total);
    return (unsigned)((long double)done * 10000.0L / (long double)s->total);
}

static void remember(const struct diskimg_progress_state *s)
{
    out.done = s->done;
    out.total = s->total;
    out.hundredths = json_hundredths(s);
    out.rate = average_rate(s);
    if (!out.phase || strcmp(out.phase, s->phase)) {
        g_free(out.phase);
        out.phase = g_strdup(s->phase);
    }
}

static void emit_simple(const char *event)
{
    finish_line(begin_line(event));
}

/* The "start" line is written at the event after STARTED, so that it
 * carries the phase the command names right after creating the progress. */
static void fd_event(const struct diskimg_progress_state *s)
{
    if (out.fd < 0 || out.broken)
        return;
    if (s->event == DISKIMG_PROGRESS_STARTED) {
        out.completed = false;
        out.start_pending = true;
    }
    if (s->event == DISKIMG_PROGRESS_COMPLETED)
        out.completed = true;
    remember(s);
    if (s->event == DISKIMG_PROGRESS_STARTED)
        return;
    if (out.start_pending) {
        out.start_pending = false;
        emit_simple("start");
        if (s->event == DISKIMG_PROGRESS_PHASE)
            return;
    }
    switch (s->event) {
    case DISKIMG_PROGRESS_PHASE:
        emit_simple("phase");
        break;
    case DISKIMG_PROGRESS_UPDATED:
        if (g_get_monotonic_time() - out.last_line_us >= FD_INTERVAL_US)
            emit_simple("progress");
        break;
    case DISKIMG_PROGRESS_FINISHED: {
        JsonBuilder *b = begin_line("end");
        json_builder_set_member_name(b, "completed");
        json_builder_add_boolean_value(b, out.completed);
        finish_line(b);
        break;
    }
    case DISKIMG_PROGRESS_STARTED:
    case DISKIMG_PROGRESS_COMPLETED:        /* shown by the "end" line */
        break;
    }
}

/* ---------------------------------------------------------- interface */

static void observe(const struct diskimg_progress_state *s, void *opaque)
{
    (void)opaque;
    if (s->event == DISKIMG_PROGRESS_STARTED)
        catch_sigusr1();
    if (s->mode == DISKIMG_PROGRESS_BAR)
        bar_event(s);
    if (s->event != DISKIMG_PROGRESS_FINISHED)
        answer_sigusr1(s);
    fd_event(s);
}

void cli_progress_install(void)
{
    diskimg_set_progress_observer(observe, NULL);
}

diskimg_progress *cli_progress_new(const struct cli *c, uint64_t total, const char *phase)
{
    bool bar_wanted = cli_flag(c, "progress") && !c->quiet;
    diskimg_progress *p = diskimg_progress_new(bar_wanted ? DISKIMG_PROGRESS_BAR
                                                          : DISKIMG_PROGRESS_QUIET, total);
    diskimg_progress_set_phase(p, phase);
    return p;
}

void cli_progress_end(diskimg_progress *p, bool succeeded)
{
    if (succeeded)
        diskimg_progress_complete(p);
    diskimg_progress_finish(p);
}

void cli_progress_begin(const char *command)
{
    run.command = command;
    run.started_us = g_get_monotonic_time();
    run.style = &default_style;
    for (size_t i = 0; i < G_N_ELEMENTS(styles); i++)
        if (g_str_equal(styles[i].command, command))
            run.style = &styles[i];
}

int cli_progress_open_fd(const char *text)
{
    guint64 n;
    if (!g_ascii_string_to_unsigned(text, 10, 0, INT_MAX, &n, NULL)) {
        cli_error("--progress-fd: '%s' is not a file descriptor number", text);
        return 1;
    }
    int flags = fcntl((int)n, F_GETFL);
    if (flags < 0) {
        cli_error("--progress-fd: file descriptor %d is not open", (int)n);
        return 1;
    }
    if ((flags & O_ACCMODE) == O_RDONLY) {
        cli_error("--progress-fd: file descriptor %d is not open for writing", (int)n);
        return 1;
    }
    out.fd = (int)n;
    return 0;
}

void cli_progress_note_error(const char *message)
{
    if (!run.first_error)
        run.first_error = g_strdup(message);
}

void cli_progress_result(int status)
{
    if (out.fd >= 0 && !out.broken) {
        JsonBuilder *b = begin_line("result");
        json_builder_set_member_name(b, "status");
        json_builder_add_int_value(b, status);
        json_builder_set_member_name(b, "error");
        if (run.first_error)
            json_builder_add_string_value(b, run.first_error);
        else
            json_builder_add_null_value(b);
        finish_line(b);
    }
    g_clear_pointer(&run.first_error, g_free);
    g_clear_pointer(&out.phase, g_free);
}
