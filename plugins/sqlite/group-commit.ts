import type { Database as SqliteDatabase } from 'better-sqlite3'
import { FiledgeError, type Mutex } from '../../core/index.js'

/**
 * Group commit for append files: several files' writes share one
 * transaction, and so one fsync, while each file stays atomic on its own.
 *
 * Why: with synchronous=FULL every COMMIT waits for an fsync of the WAL, a
 * few milliseconds on most disks, and for small files that wait was most of
 * the run (5,000 files × 100 rows: 13 of 41 s in COMMIT). Writes are
 * serialized by the destination's mutex anyway, so while one file writes, the
 * next ones queue behind it; they join the open transaction instead of each
 * paying its own fsync.
 *
 * How each file stays atomic: it writes inside `SAVEPOINT file`. On success
 * the savepoint is released into the group; on any error it is rolled back to,
 * which undoes exactly that file's rows and nothing of the others, and the
 * error goes to that file alone.
 *
 * When the group commits: on the turn of the event loop after a file finished
 * with nobody queued behind it (so a lone file commits at once, give or take
 * one loop turn; no timer), when MAX_FILES have joined, or before anything
 * that must not share the transaction starts (a large file, truncate and cdc
 * writes, DDL). Committing in the same turn looked equivalent but was not: a
 * small file parsed from memory finishes before any other file's I/O
 * callback runs, so every group held one file.
 *
 * Durability order: a file's `durable` promise settles only after the COMMIT
 * that holds its rows has returned, and the caller waits for it before telling
 * the ledger: the ledger never says COMMITTED for rows that are not on disk.
 * If that COMMIT fails, every file of the group fails with its error (none of
 * their rows are in the table).
 *
 * Leases: each file checks its lease before its savepoint is released, as it
 * checked it before COMMIT when it had a transaction of its own. The COMMIT
 * follows within the time the rest of the group takes to write (small files
 * only, by construction); a lease lost in that window is caught by the
 * ledger's fenced `complete`, and the rows the group committed are replaced,
 * not duplicated, when the new holder writes the same hash.
 */

/** Files larger than this get a transaction of their own: a long write must not hold back the commits of small files queued before it. */
export const GROUP_MAX_FILE_BYTES = 1024 * 1024
/** At most this many files per transaction. */
const MAX_FILES = 256

interface Member {
  resolve(): void
  reject(error: unknown): void
}

export interface GroupCommit {
  /** Call when a write is requested, before waiting for the destination's mutex. */
  queued(): void
  /**
   * Inside the mutex: runs `write` as one file of the open group (beginning a
   * group if none is open) and returns its result and a promise that settles
   * when the group's COMMIT is done. Await `durable` outside the mutex.
   */
  join<T>(begin: () => Promise<void>, write: () => Promise<T>): Promise<{ result: T; durable: Promise<void> }>
  /** Inside the mutex: commits the open group, if any, before a write that must have its own transaction. */
  flush(): void
}

export function createGroupCommit(connection: () => SqliteDatabase, lock: Mutex): GroupCommit {
  let waiting = 0
  let members: Member[] = []
  let open = false
  let deferred = false
  /** The connection's own temp_store, put back once a group is done. */
  let own: number | undefined

  /**
   * A group's savepoints keep their sub-journal (the pages a file changed, as
   * they were before it) in memory. With the connection's default temp_store
   * SQLite spills a sub-journal over 64 KiB to a temporary file, and a group
   * of small files passes that at once: 157,000 page writes, each a system
   * call, over 5,000 small files, about as many as the database and its WAL
   * got together. A sub-journal holds one file's pages at most (it is emptied
   * when the file's savepoint is released), and groups hold only files up to
   * GROUP_MAX_FILE_BYTES. Only while a group is open: temp_store also places
   * temporary tables, and a cdc file stages all its rows in one. SQLite
   * refuses to change it inside a transaction, so it is set before BEGIN and
   * put back after COMMIT.
   */
  const inMemory = (db: SqliteDatabase, on: boolean) => {
    own ??= db.pragma('temp_store', { simple: true }) as number
    if (own === 2) return
    try {
      db.pragma(`temp_store = ${on ? 2 : own}`)
    } catch {
      // Still in a transaction SQLite did not end: the next group sets it again, and a cdc write gets it back with its own BEGIN after COMMIT.
    }
  }

  const commit = () => {
    if (!open) return
    open = false
    const db = connection()
    try {
      settle(db)
    } finally {
      inMemory(db, false)
    }
  }

  const settle = (db: SqliteDatabase) => {
    const group = members
    members = []
    if (!db.inTransaction) {
      // SQLite rolls the whole transaction back by itself on some errors (disk full, I/O): nothing of the group is in the table.
      const error = new FiledgeError('INTERNAL', 'SQLite rolled back the transaction these rows were in (see the error of the file that was writing); the file will be loaded again')
      for (const member of group) member.reject(error)
      return
    }
    try {
      db.exec('COMMIT')
    } catch (error) {
      if (db.inTransaction) db.exec('ROLLBACK')
      for (const member of group) member.reject(error)
      return
    }
    for (const member of group) member.resolve()
  }

  return {
    queued() {
      waiting++
    },

    async join(begin, write) {
      waiting--
      const db = connection()
      try {
        if (!open) {
          inMemory(db, true)
          try {
            await begin()
          } catch (error) {
            inMemory(db, false)
            throw error
          }
          open = true
        }
        db.exec('SAVEPOINT file')
        let result
        try {
          result = await write()
        } catch (error) {
          if (db.inTransaction) {
            db.exec('ROLLBACK TO file')
            db.exec('RELEASE file')
          }
          throw error
        }
        db.exec('RELEASE file')
        const durable = new Promise<void>((resolve, reject) => members.push({ resolve, reject }))
        // Every member awaits its promise; this keeps a group whose COMMIT fails from also raising an unhandled rejection.
        durable.catch(() => undefined)
        return { result, durable }
      } finally {
        if (members.length >= MAX_FILES) commit()
        else if (waiting === 0 && !deferred) {
          // Nobody is queued yet, but files in flight may be one I/O callback away (a small file parses
          // from memory without yielding to I/O). Commit on the next turn of the event loop, after its
          // poll phase: files that reach write() by then join this group, later ones start the next.
          deferred = true
          setImmediate(() => {
            deferred = false
            lock.run(async () => commit()).catch(() => undefined)
          })
        }
      }
    },

    flush: commit,
  }
}
