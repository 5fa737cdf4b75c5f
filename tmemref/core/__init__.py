"""Xen: ``tmem.c`` — the hypervisor-independent engine: host, clients, pools, objects, eviction, control, statistics."""
