"""Where tmemref differs from Xen's documentation or Xen's code, and why — one record each.

The rule: where Xen's code and its documentation disagree, tmemref follows the documented
intent by default and offers the code's behaviour behind a named option where it is
observable; where they agree, tmemref follows them; known Xen bugs are named and not
reproduced by default (those of save and restore can be, behind ``Host(save_bugs=...)``).
The book's fidelity chapter renders this table, so it cannot drift from the code.

>>> all(n.topic and n.tmemref for n in NOTES)
True
>>> sorted({n.kind for n in NOTES})
['bug not reproduced', 'choice', 'code vs doc', 'version']
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Note:
    topic: str                  # what it is about
    kind: str                   # 'code vs doc', 'version', 'choice', 'bug not reproduced', 'not modelled yet'
    xen: str                    # what Xen's docs and/or code do (with versions)
    tmemref: str                # what tmemref does
    option: Optional[str] = None   # the Host option that gives the other behaviour, if any


NOTES = (
    Note("Over-quota rule for weighted clients", "code vs doc",
         "tmem-internals.html: a client whose share of ephemeral pages exceeds its weight's share "
         "is evicted from its own list. client_over_quota() in every Xen computes "
         "g*100/c > T*100/w, true when the client's share is *below* its weight's share.",
         "The documented rule by default.", 'Host(quota_rule="xen")'),
    Note("LRU head and tail", "code vs doc",
         "The doc says pages are evicted from the tail and promoted to the front; the code adds "
         "at the tail and evicts from the head. Same policy, opposite names.",
         "Lists are drawn and iterated oldest first; new and promoted pages go to the young end."),
    Note("TMEMC_DESTROY", "code vs doc",
         "Named 'destroy', but tmemc_freeze_pools() only prints 'destroyed' and thaws the client.",
         "Does what the code does: thaws, destroys nothing."),
    Note("TMEM_AUTH flag value", "code vs doc",
         "xl's help text (<= 4.8) and the 4.12 man page say 0=auth, 1=deauth; the hypervisor "
         "always took 1 = authorise, 0 = revoke.",
         "1 authorises, 0 revokes (the hypervisor's meaning)."),
    Note("Who may call control operations", "version",
         "Until 4.2.0 any guest could issue TMEM_CONTROL (XSA-15). 4.2.1 made TMEM_CONTROL "
         "privileged-only, but do_tmem_op ran TMEM_AUTH and TMEM_RESTORE_NEW with no "
         "privilege check until 4.9 replaced them with privileged sysctls: in 4.2.1-4.8 any "
         "guest could authorise any client for a shared pool, or create a pool in another "
         "guest's client.",
         "TMEM_CONTROL (classic TMEMC_* numbering), TMEM_AUTH and TMEM_RESTORE_NEW work for "
         "privileged domains only (domain 0 by default), as the doc and 4.9+ intend; others "
         "get -EPERM."),
    Note("Unknown commands", "version",
         "<= 4.3 returned 0 (and NEW_PAGE/READ/WRITE worked); 4.4+ return -ENOSYS. TMEM_CONTROL "
         "returns -EOPNOTSUPP from 4.6 (moved to sysctl).",
         "-ENOSYS for 3, 8, 9, 10 and every unknown command, after the pool check (a bad pool "
         "gives -ENODEV first); TMEM_CONTROL runs the classic sub-ops."),
    Note("Shared persistent pools", "version",
         "Allowed up to 4.4, rejected with -EPERM from 4.5.", "Rejected (-EPERM)."),
    Note("Authorisation to join shared pools", "version",
         "<= 4.8 needed only with the boot option tmem_shared_auth (default off), so any guest "
         "that guessed a uuid could join; 4.9+ required it by default.",
         "Required by default; an unauthorised guest silently gets a private pool.",
         "Host(shared_auth=False)"),
    Note("1 MB guard failure", "version",
         "tmem_ensure_avail_pages() wants 1 MB in tmem_page_list plus total_free_pages(): the "
         "heap's free pages minus its reserve (midsize_alloc_zone_pages, 1/128 of memory), an "
         "unsigned difference that wraps to a huge number when the heap is below the reserve. "
         "It was void in <= 4.3 (the put went on); 4.4+ fail the put with -ENOMEM after 10 "
         "failed evictions.",
         "The 4.4+ behaviour, counting the reserve out; a heap below the reserve counts as "
         "nothing free beyond it (no wrap).",
         "Host(min_free_pages=..., evict_budget=...)"),
    Note("A duplicate put refused by the 1 MB guard", "code vs doc",
         "4.4+ returns -ENOMEM before do_tmem_put, so an older copy of that page stays "
         "readable: a failed put leaving old data, which the doc's put-put-get rule forbids.",
         "The old copy is flushed (pt and pd count it); a refused put of a new page still "
         "moves no pool counter."),
    Note("tmem_rwlock on page operations", "version",
         "The doc (<= 4.3): page operations hold it for reading, invasive ones (pool creation, "
         "control) for writing. 4.5+ (commit b214115f09) takes it for writing on every call, "
         "validates the pool, then write_unlock + read_lock: between the two a DESTROY_POOL "
         "from another vCPU can free the pool the put then uses.",
         "The documented scheme: page operations hold it for reading across the whole call, "
         "the client and pool lookups included (a dying domain's calls get -ENODEV). "
         "Host(lock_scheme=\"xen-4.5\") takes it for writing first as 4.5+ did, then looks "
         "the pool up again under the read lock (closing the window Xen left open).",
         'Host(lock_scheme="xen-4.5")'),
    Note("A bad guest frame", "choice",
         "Xen copies the page late, under the object lock: a bad frame in a duplicate put "
         "flushes the old data (put-put-get coherence); a bad frame in a new put is found after "
         "the descriptor was allocated and undone; in a private ephemeral get it leaks the "
         "already-unlinked descriptor.",
         "The op is copied once on entry, as copy_from_guest does, and the guest frame with it: "
         "a put's page is read whole before any lock is taken, a get's buffer is pinned (a "
         "released memoryview, closed mmap, or array of non-numbers is refused). Duplicate put "
         "with an unreadable frame: the old data is flushed, -EFAULT (coherence wins). New put: "
         "-EFAULT, nothing changes. Get: -EFAULT before anything changes (a miss returns 0 "
         "whatever the buffer). A TmemOp whose values no C struct could hold (anything but an "
         "exact int in a number field) is -EFAULT."),
    Note("last_client of a shared object on put", "choice",
         "Xen's put records the pool *owner's* id; its get records the caller's.",
         "Both record the caller, so 'a sharer's destroy removes the objects it touched last' "
         "means what it says."),
    Note("shared_pool_reassign", "bug not reproduced",
         "Moves the old owner's *whole* ephemeral list (pages of its other pools too) to the new "
         "owner and shifts eph_count by this pool's page count.",
         "Moves exactly this pool's pages."),
    Note("Duplicate put of an uncompressed page", "choice",
         "The doc allows overwriting in place when the size is the same. The code recompresses "
         "only when compression is on and the old data was compressed; otherwise (compression "
         "off, or an old page stored raw because it did not shrink) it frees the old frame, "
         "allocates a new one and copies the page raw, without trying to compress it; "
         "compress_poor and compress_nomem are counted on new puts only.",
         "The code's rule for when to compress, and for the counters. A raw old page without dedup is overwritten "
         "in its frame (unobservable: Xen would take back the frame it just freed)."),
    Note("Compression codec", "choice",
         "LZO1X-1 (a port of Linux's lzo1x_1_compress); a page is kept compressed iff "
         "0 < size < 4064 bytes.",
         "LZO1X-1 through python-lzo (liblzo2) with the same threshold; lz4, zstd and zlib by "
         "name, or any object with compress/decompress. Without python-lzo the default falls "
         "back to the first of lz4, zstd, zlib and says so.", "Host(codec=...)"),
    Note("A page that compresses to 4033..4063 bytes", "code vs doc",
         "Below the 4064-byte threshold, so Xen keeps it compressed; but TLSF rounds a request "
         "of 4033..4064 bytes up to the 4096-byte class, which no one-page region can hold: "
         "the allocation fails and so does the put (-ENOMEM, compress_nomem), where storing "
         "the page whole would have worked.",
         "Stored whole and counted as poor, as for any page that does not compress enough.",
         'Host(compress_fit="xen")'),
    Note("Finding a page that trailing-zero elimination shrank", "code vs doc",
         "tmem-internals.html: tze is applied to dedup'ed pages, so a later put of the same "
         "content shares the shrunk copy. pcd_associate() (4.1-4.7) tests 'tree entry shorter "
         "than a page: greater' before its tze comparison, so a tze-shrunk pcd is never "
         "matched and every such put makes a new one.",
         "The documented intent: shrunk pages are found like any other (keys compare length, "
         "then the 64-bit words).", 'Host(tze_match="xen")'),
    Note("Second chance and the eviction walk", "version",
         "4.3 walks the LRU list with list_for_each_entry_safe, so after sending a shared page "
         "back to the young end it goes on with the next page; 4.5-4.7 use the plain iterator, "
         "so the walk stops there and that eviction attempt fails.",
         "4.3's walk (the doc's era): the scan goes on, and meets the page again at the young "
         "end, now marked eviction-attempted."),
    Note("SAVE_GET_NEXT_PAGE skips the first page of each pool", "bug not reproduced",
         "Since 4.0 its first call puts the cursor on the pool's first page and then returns "
         "the next one: the first page of every pool is never saved or migrated, and a "
         "one-page pool yields its list head (its 'oid' matches no object, so nothing is "
         "sent). A restore does not notice.",
         "The first call returns the first page; every page is saved.",
         'Host(save_bugs={"skip_first_page"})'),
    Note("Uncompressed pages in save and restore", "bug not reproduced",
         "4.4 (commit 751a77c9d5) made tmem_copy_to_client/tmem_copy_from_client return "
         "-EINVAL when handed a buffer instead of a guest frame, which is what "
         "SAVE_GET_NEXT_PAGE and RESTORE_PUT_PAGE hand them: an uncompressed page can be "
         "neither saved (the stream ends the pool early) nor restored (the restore fails). "
         "Compressed pages go through a scratch page and work.",
         "Both directions copy whole pages from and to the toolstack's buffer.",
         'Host(save_bugs={"raw_copy"})'),
    Note("SAVE_END leaves the invalidation log and cursors stale", "bug not reproduced",
         "SAVE_END frees the logged descriptors without re-initialising the list head or the "
         "save cursors, and nothing resets a pool's cursor: the next live migration of the "
         "client starts from a list of freed descriptors (reported again, so the target "
         "flushes pages that are valid) and each pool's walk resumes where the last one "
         "stopped (so pages are not sent).",
         "SAVE_BEGIN and SAVE_END reset the cursors; SAVE_END empties the log.",
         'Host(save_bugs={"stale_end"})'),
    Note("Who calls the save code", "version",
         "libxc's classic stream (xc_tmem_save / xc_tmem_restore with markers -5 and -6) was "
         "written into the legacy save image up to 4.5. From 4.6 the migration-v2 stream "
         "never calls them (tmem's own to-do list of 2015 still had 'migration v2 support'); "
         "4.8 rewrote the functions for new sub-ops, still uncalled: from 4.6 on a saved or "
         "migrated guest silently lost its persistent tmem pages.",
         "tmemref.migrate writes and reads the classic stream byte for byte and drives a "
         "live migration the way 4.5's xc_domain_save and xc_domain_restore did."),
    Note("libxc's tmem restore", "bug not reproduced",
         "xc_tmem_restore (4.0-4.5) passes 0 to SET_WEIGHT and SET_CAP instead of the saved "
         "values, and freezes a client that was saved frozen before putting its pages, so "
         "every put fails with -EFROZEN and the restore fails.",
         "restore() sets the saved weight and cap, and freezes the client last."),
    Note("The save cursor's page is flushed during a live migration", "choice",
         "The freed descriptor stays on the pool's list as the cursor (its list link "
         "overwritten by the logged object id in a union) and the walk continues from it.",
         "The cursor steps back to the previous page (or the list head): the walk continues "
         "with the same next page, and no freed descriptor stays on a list."),
    Note("The invalidation log's memory", "choice",
         "Each persistent page freed during a live migration keeps its 64-byte descriptor, "
         "billed to its pool, on the client's list until SAVE_END.",
         "The log keeps the handle (pool id, object id, index); the descriptor is freed at "
         "once."),
    Note("pers_lists_spinlock across SAVE_GET_NEXT_PAGE", "choice",
         "Held across the whole sub-op, including the get, which takes a pool lock and an "
         "object lock under it — against tmem's own lock order (list locks come after object "
         "locks); safe only because the caller holds tmem_rwlock for writing.",
         "The page is chosen under the lock and read after it is released (tmem_rwlock is "
         "held for writing throughout, as in Xen)."),
    Note("Destroying a pool while its client live-migrates", "bug not reproduced",
         "do_tmem_destroy_pool empties the slot, then pool_flush refuses to destroy the pool "
         "of a migrating client: the pool and its pages are orphaned on the source, and pages "
         "already sent stay valid on the target.",
         "The pool is destroyed and each of its persistent pages logged, so the target flushes "
         "them (its pool stays, empty)."),
    Note("SAVE_GET_POOL_UUID or SAVE_GET_NEXT_INV into a bad buffer", "choice",
         "4.3 ignores a failed copy to the toolstack's buffer (0, or 1 with nothing written).",
         "-EFAULT, and the cursor does not move."),
    Note("A shared pool after one sharer quits", "bug not reproduced",
         "shared_pool_quit() destroys the quitter's objects with pool_destroy_objs(), which "
         "marks the whole pool is_dying although it lives on for the other sharers; the "
         "evictor skips dying pools, so none of its pages is ever evicted again.",
         "Only a pool destroyed whole is marked dying; a shared pool stays evictable."),
    Note("The weight of a destroyed client", "bug not reproduced",
         "client_free() never subtracts the client's weight from client_weight_total, so a "
         "weighted guest that dies inflates the total for good (every other client's share "
         "of the weight shrinks).",
         "Destroying a domain subtracts its client's weight."),
    Note("TMEM_AUTH twice with the same uuid", "version",
         "4.3 finds the uuid already authorised and returns 1. 4.4-4.8 take a second slot for "
         "it, so one revocation (auth 0, which clears the first match) leaves the guest "
         "authorised, and 16 repeats fill the table.",
         "The 4.3 behaviour: one slot per uuid, one revocation suffices."),
    Note("TMEM_RESTORE_NEW for client 0xFFFF", "bug not reproduced",
         "A target of 0xFFFF ('no client') makes do_tmem_new_pool create the pool in the "
         "caller's own client, in its lowest free slot, assuming that client exists (an "
         "ASSERT; a NULL dereference in a release build if it does not).",
         "The same, creating the caller's client first if it has none."),
    Note("Joining a shared pool without memory for the share-list entry", "bug not reproduced",
         "-EPERM (alloc_failed counted), but the caller's slot is left pointing at the shared "
         "pool it did not join.",
         "-EPERM and alloc_failed, the slot left empty."),
    Note("The radix-tree 'stump'", "choice",
         "Like Linux's, Xen's radix tree allocates nodes on the way down, so a failed insert "
         "can leave empty nodes, counted in the pool's Nc/Nm until the object is freed.",
         "A failed insert changes nothing: no stump, no nodes counted."),
    Note("xen-tmem-list-parse: shared pool ids", "bug not reproduced",
         "The S= printer looks up the tag PI, which S= lines never carry, so every shared pool "
         "prints as poolid=0.",
         "Prints the line's own SI; format_list_parse(text, quirks=True) prints what Xen's "
         "tool did."),
    Note("The heap's orders", "choice",
         "A buddy allocator: an order-n request needs 2**n contiguous frames, and the "
         "reserve serves orders 1-8 once free memory is down to it.",
         "Frames are counted, not placed: an order-n request takes any 2**n free frames (no "
         "fragmentation). The reserve and relinquish rules are Xen's."),
    Note("T= timing line in LIST", "version",
         "<= 4.3 printed it only in TMEM_PERF builds; 4.12 prints a bare 'T'.",
         "No T= line (no cycle counters are kept; Tc is always 0)."),
    Note("LIST quirks", "bug not reproduced",
         "tmemc_list_shared() does not reset its offset between shared pools; the C= line is "
         "copied without a length check.",
         "Every line is placed and length-checked."),
    Note("TMEM_AUTH for a domain that never used tmem", "choice",
         "<= 4.8: -EINVAL (no client yet); 4.9's SET_AUTH creates the client.",
         "Creates the client (4.9's behaviour), so a tool may authorise a guest before it boots."),
    Note("A LIST line that does not fit", "choice",
         "Xen stops the rest of that group of lines (e.g. a client's remaining P= lines).",
         "Drops only that line and goes on with the next."),
    Note("Sub-page allocator", "choice",
         "TLSF (xmalloc_tlsf.c): one pool for ephemeral pools, pcds and sharelists, one per "
         "client for persistent pools (billed to its domain), first frame taken lazily; a "
         "region whose blocks are all free goes back at once.",
         "The same TLSF: two-level classes, bitmaps, 16-byte headers written into the frames "
         "as Xen's x86-64 struct bhdr words (\"no block\" is all ones, not NULL: address 0 is "
         "frame 0), split and coalesce, one frame per region; structure sizes are x86-64 "
         "estimates from the field lists (tmemref.host.alloc.SIZEOF)."),
    Note("A region fetched but not used", "bug not reproduced",
         "xmem_pool_alloc() drops the pool lock to get a frame; if another CPU freed room "
         "meanwhile, the retried search can find that first, and the new region stays in the "
         "pool, wholly free, until the pool is destroyed.",
         "The unused region is given back at once (the interleaving explorer finds this "
         "schedule in the 'guard' scenario)."),
)


def table(kind: Optional[str] = None):
    """The notes as rows of (topic, kind, xen, tmemref, option), optionally of one kind."""
    return [(n.topic, n.kind, n.xen, n.tmemref, n.option or "")
            for n in NOTES if kind is None or n.kind == kind]
