/**
 * Numbered, append-only migrations for the SQLite ledger. Never edit a
 * released migration: add the next number.
 */
export const SQLITE_MIGRATIONS: readonly { readonly version: number; readonly sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE files (
        pipeline TEXT NOT NULL,
        hash TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('PENDING', 'PROCESSING', 'COMMITTED', 'FAILED')),
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_token TEXT,
        lease_expires_at INTEGER,
        worker TEXT,
        rows INTEGER,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        committed_at TEXT,
        PRIMARY KEY (pipeline, hash)
      );
      CREATE INDEX files_state ON files (pipeline, state);

      CREATE TABLE file_paths (
        pipeline TEXT NOT NULL,
        hash TEXT NOT NULL,
        path TEXT NOT NULL,
        first_seen_at TEXT NOT NULL,
        PRIMARY KEY (pipeline, hash, path)
      );
      CREATE INDEX file_paths_path ON file_paths (path);

      CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        hash TEXT NOT NULL,
        event TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT,
        attempt INTEGER,
        worker TEXT,
        path TEXT,
        error TEXT
      );
      CREATE INDEX events_file ON events (pipeline, hash, id);

      -- History is never rewritten: the database itself refuses.
      CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'the events table is append-only'); END;
      CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'the events table is append-only'); END;
    `,
  },
  {
    version: 2,
    sql: `
      -- The stat cache: the last stat each path was hashed under, and the hash.
      -- A run skips hashing a path whose stat is unchanged and whose file is
      -- settled (see sql/stats.ts). Keyed by path, so it holds one row per
      -- path ever seen, not per version.
      CREATE TABLE file_stats (
        pipeline TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ms REAL NOT NULL,
        ino INTEGER NOT NULL,
        dev INTEGER NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (pipeline, path)
      );
    `,
  },
  {
    version: 3,
    sql: `
      -- INSERT OR REPLACE (or REPLACE) with the id of an existing event deletes
      -- that row and inserts another in its place, and that delete fires no
      -- DELETE trigger (unless the writing connection turned recursive_triggers
      -- on), so migration 1's triggers let history be rewritten that way.
      -- Refused at the insert instead, before the conflict is resolved. An id
      -- SQLite assigns itself is -1 in a BEFORE trigger, which no event has.
      CREATE TRIGGER events_no_replace BEFORE INSERT ON events WHEN NEW.id IN (SELECT id FROM events)
      BEGIN SELECT RAISE(ABORT, 'the events table is append-only'); END;
    `,
  },
  {
    version: 4,
    sql: `
      -- Exactly once across the ledger and the destination (sql/claim.ts):
      -- load_id names the current load of a file, which the destination
      -- records in its load marker inside the transaction of the rows;
      -- lapses counts leases that expired in a row, which have a budget of
      -- their own instead of counting as attempts.
      ALTER TABLE files ADD COLUMN load_id TEXT;
      ALTER TABLE files ADD COLUMN lapses INTEGER NOT NULL DEFAULT 0;
      -- The version (mtime and inode) a path held these bytes at: a new
      -- version or path is a new arrival of the bytes.
      ALTER TABLE file_paths ADD COLUMN version TEXT;
    `,
  },
  {
    version: 5,
    sql: `
      -- Sources are plugins (S3, SFTP…): the stat cache is keyed by the
      -- source's version of a path (mtime and inode locally, an ETag
      -- remotely) instead of a local stat. The old entries are dropped: each
      -- path is read once more, then cached under its version.
      DROP TABLE file_stats;
      CREATE TABLE file_stats (
        pipeline TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        version TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (pipeline, path)
      );
    `,
  },
  {
    version: 6,
    sql: `
      -- Stages: the code a file's committed rows were produced under (the
      -- hash of its pipeline's stages; NULL without stages), and what each
      -- code was made of, so a stale file can say why.
      ALTER TABLE files ADD COLUMN code TEXT;
      CREATE TABLE codes (
        pipeline TEXT NOT NULL,
        code TEXT NOT NULL,
        stages TEXT NOT NULL,
        first_seen_at TEXT NOT NULL,
        PRIMARY KEY (pipeline, code)
      );
    `,
  },
  {
    version: 7,
    sql: `
      -- Ponds (sql/pond.ts): every run of a pond and of each of its ripples,
      -- append-only like the file events, in a table of their own (their
      -- fields are not a file's). No CHECK on event or trigger names: a new
      -- one would need the table rebuilt, and the types already hold them.
      CREATE TABLE pond_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        pond TEXT NOT NULL,
        version TEXT NOT NULL,
        run_id TEXT NOT NULL,
        event TEXT NOT NULL,
        ripple TEXT,
        outlet TEXT NOT NULL,
        trigger TEXT NOT NULL,
        freshness TEXT NOT NULL,
        input_version TEXT,
        data_version TEXT,
        error TEXT,
        duration_ms INTEGER,
        rows INTEGER,
        worker TEXT NOT NULL
      );
      CREATE INDEX pond_events_pond ON pond_events (pond, id);
      CREATE INDEX pond_events_run ON pond_events (run_id);
      -- As migrations 1 and 3 for the file events.
      CREATE TRIGGER pond_events_no_update BEFORE UPDATE ON pond_events BEGIN SELECT RAISE(ABORT, 'the pond_events table is append-only'); END;
      CREATE TRIGGER pond_events_no_delete BEFORE DELETE ON pond_events BEGIN SELECT RAISE(ABORT, 'the pond_events table is append-only'); END;
      CREATE TRIGGER pond_events_no_replace BEFORE INSERT ON pond_events WHEN NEW.id IN (SELECT id FROM pond_events)
      BEGIN SELECT RAISE(ABORT, 'the pond_events table is append-only'); END;

      -- Who may run a pond now (sql/pond-lease.ts): one row per pond that was
      -- ever leased and not released, its holder's token and when it expires
      -- (ms since the epoch, as files.lease_expires_at). The only pond table
      -- that is updated.
      CREATE TABLE pond_leases (
        pond TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        worker TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 8,
    sql: `
      -- Named leases (sql/lease.ts): one holder at a time for work only one
      -- process may do, by name: 'pond:<pond>' runs a pond, 'fetch:<source>'
      -- fetches a source. Pond leases move here from pond_leases, live ones
      -- included, so a pond running across the upgrade keeps its lease.
      CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        worker TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      );
      INSERT INTO leases (name, token, worker, expires_at) SELECT 'pond:' || pond, token, worker, expires_at FROM pond_leases;
      DROP TABLE pond_leases;

      -- Cursors of sources that pull (sql/cursor.ts): every advance of a
      -- source's cursor, append-only like the file events; a source's cursor
      -- is its newest event's to_cursor. No table of current cursors: the
      -- (source, id) index finds the newest event in one seek.
      CREATE TABLE cursor_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        source TEXT NOT NULL,
        event TEXT NOT NULL,
        from_cursor TEXT,
        to_cursor TEXT NOT NULL,
        file TEXT,
        hash TEXT,
        records INTEGER NOT NULL,
        pages INTEGER NOT NULL,
        worker TEXT NOT NULL
      );
      CREATE INDEX cursor_events_source ON cursor_events (source, id);
      -- As migrations 1 and 3 for the file events.
      CREATE TRIGGER cursor_events_no_update BEFORE UPDATE ON cursor_events BEGIN SELECT RAISE(ABORT, 'the cursor_events table is append-only'); END;
      CREATE TRIGGER cursor_events_no_delete BEFORE DELETE ON cursor_events BEGIN SELECT RAISE(ABORT, 'the cursor_events table is append-only'); END;
      CREATE TRIGGER cursor_events_no_replace BEFORE INSERT ON cursor_events WHEN NEW.id IN (SELECT id FROM cursor_events)
      BEGIN SELECT RAISE(ABORT, 'the cursor_events table is append-only'); END;
    `,
  },
  {
    version: 9,
    sql: `
      -- Quarantine (core/quarantine/sidecar.ts): the records a file's
      -- committed load set aside, and the sidecar that holds them (NULL: none
      -- set aside). The count goes into the load's file:committed or
      -- file:healed event too, so the history keeps it when a later load of
      -- the file replaces the record's.
      ALTER TABLE files ADD COLUMN quarantined INTEGER;
      ALTER TABLE files ADD COLUMN sidecar TEXT;
      ALTER TABLE events ADD COLUMN quarantined INTEGER;
      -- file:replayed events (sql/replayed.ts) are found by the new file's
      -- path, for its lineage; a partial index, as they are few.
      CREATE INDEX events_replayed ON events (path) WHERE event = 'file:replayed';
    `,
  },
  {
    version: 10,
    sql: `
      -- Failures are what the audit page reads of the events (core/audit/page):
      -- found by this partial index instead of a scan of every event (3M
      -- events, 40,000 failures: 0.09 s against 0.5-0.75 s). A query on
      -- event = 'file:failed' uses it; one on event IN ('file:failed') does not.
      CREATE INDEX events_failed ON events (id) WHERE event = 'file:failed';
    `,
  },
]
