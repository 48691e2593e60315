/* SPDX-License-Identifier: MIT */
/*
 * Progress reporting shared by every long-running command.  With -p the
 * percentage is redrawn in place ("    (42.00/100%)\r") whenever it moves by
 * at least 0.01 %; without -p nothing is printed until SIGUSR1 asks, then
 * one line is printed, as qemu-img does.
 */
#include <signal.h>
#include <stdio.h>

#include "internal.h"

struct diskimg_progress {
    enum diskimg_progress_mode mode;
    GMutex lock;
    uint64_t total, done;
    int last_hundredths;           /* last value printed, in 1/100 % */
};

static volatile sig_atomic_t usr1_pending;

static void on_sigusr1(int sig)
{
    (void)sig;
    usr1_pending = 1;
}

static void install_sigusr1(void)
{
    struct sigaction sa = { 0 };
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
}

diskimg_progress *diskimg_progress_new(enum diskimg_progress_mode mode, uint64_t total)
{
    diskimg_progress *p = g_new0(diskimg_progress, 1);
    p->mode = mode;
    p->total = total;
    p->last_hundredths = -1;
    g_mutex_init(&p->lock);
    install_sigusr1();
    if (mode == DISKIMG_PROGRESS_BAR) {
        printf("    (0.00/100%%)\r");
        fflush(stdout);
        p->last_hundredths = 0;
    }
    return p;
}

static int hundredths(const diskimg_progress *p)
{
    if (p->total == 0)
        return 10000;
    uint64_t done = MIN(p->done, p->total);
    return (int)((long double)done * 10000.0L / (long double)p->total);
}

static void print_locked(diskimg_progress *p)
{
    int h = hundredths(p);
    if (usr1_pending) {
        usr1_pending = 0;
        printf("    (%d.%02d/100%%)\n", h / 100, h % 100);
        fflush(stdout);
    }
    if (p->mode == DISKIMG_PROGRESS_BAR && h != p->last_hundredths) {
        p->last_hundredths = h;
        printf("    (%d.%02d/100%%)\r", h / 100, h % 100);
        fflush(stdout);
    }
}

void diskimg_progress_add(diskimg_progress *p, uint64_t done)
{
    if (!p)
        return;
    g_mutex_lock(&p->lock);
    p->done += done;
    print_locked(p);
    g_mutex_unlock(&p->lock);
}

void diskimg_progress_set_total(diskimg_progress *p, uint64_t total)
{
    if (!p)
        return;
    g_mutex_lock(&p->lock);
    p->total = total;
    g_mutex_unlock(&p->lock);
}

void diskimg_progress_finish(diskimg_progress *p)
{
    if (!p)
        return;
    if (p->mode == DISKIMG_PROGRESS_BAR) {
        p->done = p->total;
        print_locked(p);
        printf("\n");
        fflush(stdout);
    }
    g_mutex_clear(&p->lock);
    g_free(p);
}
