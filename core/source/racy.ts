/**
 * How long after its last modification a file's version starts to vouch for
 * its bytes, for sources whose versions are mtimes. Within the filesystem's
 * mtime granularity a same-size rewrite leaves the stat unchanged (git's
 * "racily clean" index entries), so a file read that soon after a write is
 * not remembered by its version: the stat cache does not enter it, the cache
 * plugin does not keep its bytes, a stage's module hash is not memoized; the
 * next read looks again. 2 s covers the coarsest common granularity (FAT,
 * and SFTP's whole seconds); ext4 and APFS tick in nanoseconds to milliseconds.
 */
export const RACY_MS = 2000
