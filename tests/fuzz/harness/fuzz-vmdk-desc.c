/* SPDX-License-Identifier: MIT */
/*
 * fuzz-vmdk-desc.c — the vmdk text descriptor parser
 * (plugins/format/vmdk/descriptor.c, compiled into the harness): parse,
 * then the edits the plugin makes (CID, parentCID, parentFileNameHint)
 * and the text written back.
 */
#include "fuzz.h"

#include "vmdk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vmdk_desc *d = NULL;
    if (vmdk_desc_parse((const char *)data, size, "fuzz.vmdk", &d, NULL) < 0)
        return 0;
    uint32_t cid;
    const char *text = vmdk_desc_get(d, "CID");
    if (text)
        vmdk_parse_cid(text, &cid);
    text = vmdk_desc_get(d, "parentCID");
    if (text)
        vmdk_parse_cid(text, &cid);
    vmdk_desc_set(d, "CID", "fffffffe", false, NULL);
    vmdk_desc_set(d, "parentFileNameHint", "base.vmdk", true, "parentCID");
    vmdk_desc_remove(d, "ddb.uuid.image");
    g_free(vmdk_desc_format(d));
    vmdk_desc_free(d);
    return 0;
}
