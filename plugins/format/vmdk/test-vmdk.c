/* SPDX-License-Identifier: MIT */
#include "vmdk.h"
int main(void) { return 0; }
