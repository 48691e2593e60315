/* SPDX-License-Identifier: MIT */
/* rbd.h — what the rbd plugin's files share. */
#ifndef DISKIMG_RBD_H
#define DISKIMG_RBD_H

#include <diskimg/plugin.h>

#define RBD_PREFIX "rbd:"

/* What an rbd name or --image-opts string points at. */
struct rbd_location {
    char *pool, *ns, *image, *snap;   /* ns, snap: NULL when not given */
    char *conf, *user;                /* NULL: librados' defaults */
    GPtrArray *conf_pairs;            /* Ceph settings: key, value, key, value... */
};

void rbd_location_clear(struct rbd_location *loc);
/* Parses qemu's rbd:pool/[ns/]image[@snap][:key=value...] syntax. */
int rbd_location_parse(const char *filename, struct rbd_location *loc, GError **errp);
/* Adds the schema's open-options (pool, image...) and checks that pool
 * and image are known. */
int rbd_location_merge(struct rbd_location *loc, const diskimg_options *o, GError **errp);
/* Both: the file name (unless it is the core's json: display name), then
 * the options. */
int rbd_location_from_open(const char *filename, const diskimg_options *o,
                           struct rbd_location *loc, GError **errp);

#endif
