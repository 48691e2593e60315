/* SPDX-License-Identifier: MIT */
/*
 * amend.c — adding and erasing key slots, with the rules and messages of
 * qemu 7.2's qcrypto_block_luks_amend_options:
 *
 *   state=active   new-secret=ID [keyslot=N] [iter-time=MS]
 *       puts the master key into slot N (default: the first inactive
 *       one) under the passphrase of secret ID; an active slot is only
 *       overwritten with --force.
 *   state=inactive keyslot=N | old-secret=ID
 *       erases slot N (checked against old-secret when both are given),
 *       or every slot the passphrase of old-secret opens; erasing the last
 *       active slots, which would lose the data, needs --force.
 *
 * The image was unlocked when it was opened read-write (key-secret), so
 * the master key is at hand for new slots.
 */
#include <string.h>

#include "luks.h"

/* What -o asked for; `has_*` for options qemu tells given from absent. */
struct amend_request {
    const char *state;
    bool has_keyslot;
    int64_t keyslot;
    const char *old_secret;
    const char *new_secret;
    bool has_iter_time;
    int64_t iter_time;
};

static void read_request(const diskimg_options *o, struct amend_request *r)
{
    memset(r, 0, sizeof(*r));
    if (!o)
        return;
    r->state = diskimg_options_get_str(o, "state");
    r->has_keyslot = diskimg_options_has(o, "keyslot");
    r->keyslot = diskimg_options_get_int(o, "keyslot", 0);
    r->old_secret = diskimg_options_get_str(o, "old-secret");
    r->new_secret = diskimg_options_get_str(o, "new-secret");
    r->has_iter_time = diskimg_options_has(o, "iter-time");
    r->iter_time = diskimg_options_get_int(o, "iter-time", -1);
}

/* The header area is the file's start: the engine reads and writes it
 * through these. */
static int file_read(void *opaque, uint64_t offset, void *buf, size_t len, GError **errp)
{
    struct luks_image *s = opaque;
    return diskimg_node_pread(s->file, buf, len, offset, errp);
}

static int file_write(void *opaque, uint64_t offset, const void *buf, size_t len,
                      GError **errp)
{
    struct luks_image *s = opaque;
    return diskimg_node_pwrite(s->file, buf, len, offset, 0, errp);
}

static unsigned count_active(const struct luks_image *s)
{
    unsigned n = 0;
    for (unsigned i = 0; i < DISKIMG_LUKS_NUM_KEY_SLOTS; i++)
        n += diskimg_luks_slot_active(s->hdr, i);
    return n;
}

static int first_inactive(const struct luks_image *s)
{
    for (unsigned i = 0; i < DISKIMG_LUKS_NUM_KEY_SLOTS; i++)
        if (!diskimg_luks_slot_active(s->hdr, i))
            return (int)i;
    return -1;
}

static bool slot_in_range(int64_t slot)
{
    return slot >= 0 && slot < DISKIMG_LUKS_NUM_KEY_SLOTS;
}

/* ---------------------------------------------------------------- adding */

static int choose_slot_to_add(const struct luks_image *s, const struct amend_request *r,
                              bool force, unsigned *slot, GError **errp)
{
    if (r->has_keyslot) {
        if (!slot_in_range(r->keyslot))
            /* qemu prints this one as unsigned */
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "Invalid keyslot %u specified, must be between 0 and %d",
                                     (unsigned)r->keyslot, DISKIMG_LUKS_NUM_KEY_SLOTS - 1);
        *slot = (unsigned)r->keyslot;
    } else {
        int free_slot = first_inactive(s);
        if (free_slot < 0)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "Can't add a keyslot - all keyslots are in use");
        *slot = (unsigned)free_slot;
    }
    if (!force && diskimg_luks_slot_active(s->hdr, *slot))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Refusing to overwrite active keyslot %u - please erase it "
                                 "first", *slot);
    return 0;
}

static int add_keyslot(struct luks_image *s, const struct amend_request *r, bool force,
                       GError **errp)
{
    unsigned slot = 0;
    uint8_t *pw = NULL;
    size_t len = 0;

    if (!r->new_secret)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "'new-secret' is required to activate a keyslot");
    if (r->old_secret)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "'old-secret' must not be given when activating keyslots");
    if (choose_slot_to_add(s, r, force, &slot, errp) < 0 ||
        diskimg_crypto_password(r->new_secret, &pw, &len, errp) < 0)
        return -1;
    int ret = diskimg_luks_add_key(s->hdr, slot, pw, len, r->has_iter_time ? r->iter_time : -1,
                                   file_write, s, errp);
    diskimg_secret_wipe(pw, len);
    return ret;
}

/* --------------------------------------------------------------- erasing */

/* Erases the slot -o keyslot= names, after qemu's checks. */
static int erase_named_slot(struct luks_image *s, const struct amend_request *r,
                            const uint8_t *pw, size_t len, bool force, GError **errp)
{
    if (!slot_in_range(r->keyslot))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Invalid keyslot %" PRId64 " specified, must be between 0 and "
                                 "%d", r->keyslot, DISKIMG_LUKS_NUM_KEY_SLOTS - 1);
    unsigned slot = (unsigned)r->keyslot;
    if (pw) {
        int rv = diskimg_luks_slot_matches(s->hdr, slot, pw, len, file_read, s, errp);
        if (rv < 0)
            return -1;
        if (rv == 0)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "Given keyslot %u doesn't contain the given old password "
                                     "for erase operation", slot);
    }
    /* the trailing space is qemu's */
    if (!force && !diskimg_luks_slot_active(s->hdr, slot))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Given keyslot %u is already erased (inactive) ", slot);
    if (!force && count_active(s) == 1)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Attempt to erase the only active keyslot %u which will erase "
                                 "all the data in the image irreversibly - refusing operation",
                                 slot);
    return diskimg_luks_erase_key(s->hdr, slot, file_write, s, errp);
}

/* Erases every slot the old password opens. */
static int erase_matching_slots(struct luks_image *s, const uint8_t *pw, size_t len,
                                bool force, GError **errp)
{
    bool match[DISKIMG_LUKS_NUM_KEY_SLOTS] = { false };
    unsigned matched = 0;

    for (unsigned i = 0; i < DISKIMG_LUKS_NUM_KEY_SLOTS; i++) {
        int rv = diskimg_luks_slot_matches(s->hdr, i, pw, len, file_read, s, errp);
        if (rv < 0)
            return -1;
        match[i] = rv == 1;
        matched += match[i];
    }
    if (matched == 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "No keyslots match given (old) password for erase operation");
    if (!force && matched == count_active(s))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "All the active keyslots match the (old) password that was "
                                 "given and erasing them will erase all the data in the image "
                                 "irreversibly - refusing operation");
    for (unsigned i = 0; i < DISKIMG_LUKS_NUM_KEY_SLOTS; i++)
        if (match[i] && diskimg_luks_erase_key(s->hdr, i, file_write, s, errp) < 0)
            return -1;
    return 0;
}

static int erase_keyslots(struct luks_image *s, const struct amend_request *r, bool force,
                          GError **errp)
{
    uint8_t *pw = NULL;
    size_t len = 0;
    int ret;

    if (r->new_secret)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "'new-secret' must not be given when erasing keyslots");
    if (r->has_iter_time)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "'iter-time' must not be given when erasing keyslots");
    if (r->old_secret && diskimg_crypto_password(r->old_secret, &pw, &len, errp) < 0)
        return -1;
    if (r->has_keyslot)
        ret = erase_named_slot(s, r, pw, len, force, errp);
    else if (pw)
        ret = erase_matching_slots(s, pw, len, force, errp);
    else
        ret = diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                "To erase keyslot(s), either explicit keyslot index or the "
                                "password currently contained in them must be given");
    diskimg_secret_wipe(pw, len);
    return ret;
}

int luks_amend(void *h, const diskimg_options *options, bool force, GError **errp)
{
    struct luks_image *s = h;
    struct amend_request r;
    int ret;

    read_request(options, &r);
    if (!r.state)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Parameter 'state' is missing");
    g_rw_lock_writer_lock(&s->lock);
    if (g_str_equal(r.state, "active"))
        ret = add_keyslot(s, &r, force, errp);
    else
        ret = erase_keyslots(s, &r, force, errp);
    g_rw_lock_writer_unlock(&s->lock);
    return ret;
}
