/* SPDX-License-Identifier: MIT */
/*
 * How progress looks, as qemu-img: with -p the percentage is redrawn in
 * place ("    (42.00/100%)\r") whenever it moves by at least 0.01 %; without
 * -p nothing is printed until SIGUSR1 asks, then one line is printed.  The
 * library counts (diskimg_progress_*) and calls progress_event() below.
 */
#include <signal.h>
#include <stdio.h>

#include "cli.h"

static volatile sig_atomic_t usr1_pending;
static int last_drawn = -1;         /* in 1/100 %, of the bar being drawn */

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

static void print_percent(unsigned h, char end)
{
    printf("    (%u.%02u/100%%)%c", h / 100, h % 100, end);
    fflush(stdout);
}

static void progress_event(enum diskimg_progress_mode mode, enum diskimg_progress_event event,
                           unsigned h, void *opaque)
{
    (void)opaque;
    bool bar = mode == DISKIMG_PROGRESS_BAR;
    if (event == DISKIMG_PROGRESS_STARTED) {
        catch_sigusr1();
        last_drawn = -1;
        if (bar) {
            print_percent(0, '\r');
            last_drawn = 0;
        }
        return;
    }
    if (event == DISKIMG_PROGRESS_FINISHED && !bar)
        return;
    if (usr1_pending) {
        usr1_pending = 0;
        print_percent(h, '\n');
    }
    if (bar && (int)h != last_drawn) {
        last_drawn = (int)h;
        print_percent(h, '\r');
    }
    if (event == DISKIMG_PROGRESS_FINISHED) {
        printf("\n");
        fflush(stdout);
    }
}

void cli_progress_install(void)
{
    diskimg_set_progress_handler(progress_event, NULL);
}
