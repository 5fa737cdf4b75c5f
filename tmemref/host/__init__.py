"""Xen: ``tmem_xen.c`` and the page allocator — what the hypervisor provides: frames, billing, metadata pools, locks."""
