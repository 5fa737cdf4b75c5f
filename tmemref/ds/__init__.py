"""Libraries Xen borrowed from Linux: red-black tree, radix tree, intrusive doubly linked list."""
