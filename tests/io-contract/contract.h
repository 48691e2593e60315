/* SPDX-License-Identifier: MIT */
/*
 * contract.h — the parts of the io contract test, one file each; every
 * part registers its tests with io_test_add().
 */
#ifndef DISKIMG_IO_CONTRACT_H
#define DISKIMG_IO_CONTRACT_H

#include "io-test.h"

#define CR DISKIMG_PERM_CONSISTENT_READ
#define WR DISKIMG_PERM_WRITE
#define WU DISKIMG_PERM_WRITE_UNCHANGED
#define RS DISKIMG_PERM_RESIZE

void contract_add_open_tests(void);     /* contract-open.c */
void contract_add_data_tests(void);     /* contract-data.c */
void contract_add_space_tests(void);    /* contract-space.c */
void contract_add_lock_tests(void);     /* contract-locks.c */
void contract_add_batch_tests(void);    /* contract-batch.c */

/* Threads may call the plugin concurrently only under the PARALLEL model;
 * otherwise marks the test skipped and returns false. */
bool contract_parallel(void);

#endif
