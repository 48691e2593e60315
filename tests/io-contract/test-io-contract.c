/* SPDX-License-Identifier: MIT */
/*
 * test-io-contract.c — what every io plugin serving host files must do,
 * checked through its ops table exactly as the core drives it:
 *
 *     test-io-contract MODULE NAME [--peer=MODULE] [--options=TEXT]
 *
 * One program for all of them (meson registers it once per io plugin as
 * io-contract-NAME); what only one plugin does stays in that plugin's own
 * test.  The behaviour is qemu's block/file-posix.c: its error texts, its
 * image locks, O_DIRECT bouncing, zeroing, truncation and block status.
 * Where the plugin cannot work on this system at all (open answers
 * NOT_SUPPORTED, e.g. io_uring refused by the kernel) every test but the
 * descriptor and schema ones is skipped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <string.h>

#include "contract.h"

bool contract_parallel(void)
{
    if (io_plugin.desc->thread_model == DISKIMG_THREAD_PARALLEL)
        return true;
    g_test_skip("the plugin does not take concurrent calls");
    return false;
}

/* The module exports its entry point and nothing of its internals. */
static void assert_exports_only_entry(void)
{
    const char *internals[] = { "open", "schema_yaml" };

    g_assert_nonnull(dlsym(io_plugin.dl, DISKIMG_PLUGIN_ENTRY_SYMBOL));
    for (size_t i = 0; i < G_N_ELEMENTS(internals); i++) {
        char *sym = g_strdup_printf("%s_%s", io_plugin.desc->name, internals[i]);

        g_assert_null(dlsym(io_plugin.dl, sym));
        g_free(sym);
    }
}

static void test_descriptor(void)
{
    const struct diskimg_plugin *p = io_plugin.desc;
    char *key = g_strdup_printf("\"plugin\":\"%s\"", p->name);

    g_assert_cmpuint(p->abi_version, ==, DISKIMG_ABI_VERSION);
    g_assert_cmpuint(p->struct_size, ==, sizeof(struct diskimg_plugin));
    g_assert_cmpuint(p->kind, ==, DISKIMG_KIND_IO);
    g_assert_cmpuint(p->thread_model, <=, DISKIMG_THREAD_PARALLEL);
    g_assert_cmpstr(p->name, ==, io_name);
    g_assert_nonnull(strstr(p->schema, key));
    g_assert_nonnull(strstr(p->schema, "\"locking\":"));
    g_assert_cmpuint(ops->struct_size, ==, sizeof(struct diskimg_io_ops));
    /* What the core requires of an io plugin (registry.c). */
    g_assert_true(ops->open && ops->close && ops->pread && ops->pwrite && ops->get_size);
    assert_exports_only_entry();
    g_free(key);
}

/* The embedded schema parses, names the plugin, and offers qemu's
 * `locking` open option (each plugin's own test checks the full list). */
static void test_schema(void)
{
    diskimg_schema *schema = io_schema();
    char **keys = diskimg_schema_set_keys(schema, "open-options");

    g_assert_cmpstr(diskimg_schema_name(schema), ==, io_plugin.desc->name);
    g_assert_cmpstr(diskimg_schema_kind(schema), ==, "io");
    g_assert_true(g_strv_contains((const char *const *)keys, "locking"));
    g_strfreev(keys);
    diskimg_schema_free(schema);
}

int main(int argc, char **argv)
{
    io_test_init(&argc, &argv, "diskimg-io-contract");
    io_test_add("descriptor", test_descriptor, true);
    io_test_add("schema", test_schema, true);
    contract_add_open_tests();
    contract_add_data_tests();
    contract_add_space_tests();
    contract_add_lock_tests();
    contract_add_batch_tests();
    return io_test_run();
}
