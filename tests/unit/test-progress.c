/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the core's progress counting (core/progress.c): what the
 * observer and the older percentage handler see for each call.
 */
#include <string.h>

#include <diskimg/core.h>

struct seen {
    enum diskimg_progress_event event;
    uint64_t done, total;
    int64_t elapsed_us;
    char phase[16];
};

static GArray *observed;            /* struct seen */
static GArray *handled;             /* unsigned: event * 100000 + hundredths */

static void observer(const struct diskimg_progress_state *s, void *opaque)
{
    (void)opaque;
    g_assert_cmpuint(s->struct_size, ==, sizeof(*s));
    struct seen e = { .event = s->event, .done = s->done, .total = s->total,
                      .elapsed_us = s->elapsed_us };
    g_strlcpy(e.phase, s->phase, sizeof(e.phase));
    g_array_append_val(observed, e);
}

static void handler(enum diskimg_progress_mode mode, enum diskimg_progress_event event,
                    unsigned hundredths, void *opaque)
{
    (void)mode;
    (void)opaque;
    unsigned v = (unsigned)event * 100000 + hundredths;
    g_array_append_val(handled, v);
}

static void setup(void)
{
    observed = g_array_new(FALSE, TRUE, sizeof(struct seen));
    handled = g_array_new(FALSE, TRUE, sizeof(unsigned));
    diskimg_set_progress_observer(observer, NULL);
    diskimg_set_progress_handler(handler, NULL);
}

static void teardown(void)
{
    diskimg_set_progress_observer(NULL, NULL);
    diskimg_set_progress_handler(NULL, NULL);
    g_array_unref(observed);
    g_array_unref(handled);
}

static const struct seen *nth(guint i)
{
    g_assert_cmpuint(i, <, observed->len);
    return &g_array_index(observed, struct seen, i);
}

/* Counts, phases and the success path, as an observer sees them. */
static void test_observer_sees_bytes_and_phases(void)
{
    setup();
    diskimg_progress *p = diskimg_progress_new(DISKIMG_PROGRESS_QUIET, 1000);
    diskimg_progress_set_phase(p, "copy");
    diskimg_progress_add(p, 300);
    diskimg_progress_add(p, 200);
    diskimg_progress_set_phase(p, "flush");
    diskimg_progress_complete(p);
    diskimg_progress_finish(p);
    static const enum diskimg_progress_event want[] = {
        DISKIMG_PROGRESS_STARTED, DISKIMG_PROGRESS_PHASE,     DISKIMG_PROGRESS_UPDATED,
        DISKIMG_PROGRESS_UPDATED, DISKIMG_PROGRESS_PHASE,     DISKIMG_PROGRESS_COMPLETED,
        DISKIMG_PROGRESS_FINISHED,
    };
    g_assert_cmpuint(observed->len, ==, G_N_ELEMENTS(want));
    for (guint i = 0; i < observed->len; i++) {
        g_assert_cmpint(nth(i)->event, ==, want[i]);
        g_assert_cmpuint(nth(i)->total, ==, 1000);
        if (i)
            g_assert_cmpint(nth(i)->elapsed_us, >=, nth(i - 1)->elapsed_us);
    }
    g_assert_cmpstr(nth(0)->phase, ==, "");
    g_assert_cmpstr(nth(1)->phase, ==, "copy");
    g_assert_cmpuint(nth(3)->done, ==, 500);
    g_assert_cmpstr(nth(4)->phase, ==, "flush");
    g_assert_cmpuint(nth(5)->done, ==, 1000);   /* completion fills the rest */
    g_assert_cmpuint(nth(6)->done, ==, 1000);
    teardown();
}

/* A failed operation (finished without complete) keeps its real count. */
static void test_failure_keeps_the_count(void)
{
    setup();
    diskimg_progress *p = diskimg_progress_new(DISKIMG_PROGRESS_BAR, 1000);
    diskimg_progress_add(p, 250);
    diskimg_progress_finish(p);
    g_assert_cmpuint(observed->len, ==, 3);
    g_assert_cmpint(nth(2)->event, ==, DISKIMG_PROGRESS_FINISHED);
    g_assert_cmpuint(nth(2)->done, ==, 250);
    /* the percentage handler keeps its promise: a finished bar is at 100 % */
    g_assert_cmpuint(handled->len, ==, 3);
    g_assert_cmpuint(g_array_index(handled, unsigned, 1), ==,
                     DISKIMG_PROGRESS_UPDATED * 100000 + 2500);
    g_assert_cmpuint(g_array_index(handled, unsigned, 2), ==,
                     DISKIMG_PROGRESS_FINISHED * 100000 + 10000);
    teardown();
}

/* The percentage handler predates phases and completion: it sees no
 * PHASE event and a completion as an update at 100 %. */
static void test_handler_sees_old_events_only(void)
{
    setup();
    diskimg_progress *p = diskimg_progress_new(DISKIMG_PROGRESS_QUIET, 400);
    diskimg_progress_set_phase(p, "copy");
    diskimg_progress_add(p, 100);
    diskimg_progress_complete(p);
    diskimg_progress_finish(p);
    static const unsigned want[] = {
        DISKIMG_PROGRESS_STARTED * 100000 + 0,
        DISKIMG_PROGRESS_UPDATED * 100000 + 2500,
        DISKIMG_PROGRESS_UPDATED * 100000 + 10000,
        DISKIMG_PROGRESS_FINISHED * 100000 + 10000,
    };
    g_assert_cmpuint(handled->len, ==, G_N_ELEMENTS(want));
    for (guint i = 0; i < handled->len; i++)
        g_assert_cmpuint(g_array_index(handled, unsigned, i), ==, want[i]);
    teardown();
}

/* Counting from many threads loses nothing and never goes back. */
#define THREADS 4
#define ADDS 5000

static gpointer add_many(gpointer data)
{
    for (int i = 0; i < ADDS; i++)
        diskimg_progress_add(data, 3);
    return NULL;
}

static void test_threads_count_monotonically(void)
{
    setup();
    diskimg_set_progress_handler(NULL, NULL);
    diskimg_progress *p = diskimg_progress_new(DISKIMG_PROGRESS_QUIET, THREADS * ADDS * 3);
    GThread *t[THREADS];
    for (int i = 0; i < THREADS; i++)
        t[i] = g_thread_new("progress", add_many, p);
    for (int i = 0; i < THREADS; i++)
        g_thread_join(t[i]);
    diskimg_progress_finish(p);
    g_assert_cmpuint(observed->len, ==, THREADS * ADDS + 2);
    for (guint i = 1; i < observed->len; i++)
        g_assert_cmpuint(nth(i)->done, >=, nth(i - 1)->done);
    g_assert_cmpuint(nth(observed->len - 1)->done, ==, THREADS * ADDS * 3);
    teardown();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/progress/observer-sees-bytes-and-phases",
                    test_observer_sees_bytes_and_phases);
    g_test_add_func("/progress/failure-keeps-the-count", test_failure_keeps_the_count);
    g_test_add_func("/progress/handler-sees-old-events-only",
                    test_handler_sees_old_events_only);
    g_test_add_func("/progress/threads-count-monotonically", test_threads_count_monotonically);
    return g_test_run();
}
