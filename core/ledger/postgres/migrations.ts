/**
 * Numbered, append-only migrations for the Postgres ledger. Never edit a
 * released migration: add the next number. They run with `search_path` set to
 * the ledger's schema, so they name tables unqualified and one database can
 * hold several ledgers (`?schema=` in the URL).
 *
 * Same tables and states as the SQLite ledger (core/ledger/sqlite/migrations.ts);
 * times are timestamptz written by the database's clock.
 */
export const POSTGRES_MIGRATIONS: readonly { readonly version: number; readonly sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE files (
        pipeline text NOT NULL,
        -- "C" collation: hashes are compared byte-wise, so a hash prefix is an index range scan.
        hash text COLLATE "C" NOT NULL,
        path text NOT NULL,
        size bigint NOT NULL,
        state text NOT NULL CHECK (state IN ('PENDING', 'PROCESSING', 'COMMITTED', 'FAILED')),
        attempts integer NOT NULL DEFAULT 0,
        lease_token text,
        lease_expires_at timestamptz,
        worker text,
        rows bigint,
        error text,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        committed_at timestamptz,
        PRIMARY KEY (pipeline, hash)
      );
      CREATE INDEX files_state ON files (pipeline, state);
      CREATE INDEX files_hash ON files (hash);

      CREATE TABLE file_paths (
        pipeline text NOT NULL,
        hash text COLLATE "C" NOT NULL,
        path text NOT NULL,
        first_seen_at timestamptz NOT NULL,
        PRIMARY KEY (pipeline, hash, path)
      );
      CREATE INDEX file_paths_path ON file_paths (path);

      CREATE TABLE events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        pipeline text NOT NULL,
        hash text COLLATE "C" NOT NULL,
        event text NOT NULL,
        from_state text,
        to_state text,
        attempt integer,
        worker text,
        path text,
        error text
      );
      CREATE INDEX events_file ON events (pipeline, hash, id);

      -- History is never rewritten: the database itself refuses UPDATE, DELETE
      -- and TRUNCATE. (A trigger, not REVOKE: filedge often connects as the
      -- owner, whom REVOKE does not bind. An owner can still drop the trigger;
      -- revoke UPDATE, DELETE, TRUNCATE from the workers' role on top of it
      -- where that matters.)
      CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'the events table is append-only (% refused)', TG_OP;
      END
      $$;
      CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events FOR EACH ROW EXECUTE FUNCTION events_append_only();
      CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
    `,
  },
  {
    version: 2,
    sql: `
      -- The stat cache, as in the SQLite ledger's migration 2 (see sql/stats.ts).
      -- ino and dev are float8: Node reports them as doubles, and equality on
      -- what it reported is all the cache needs.
      CREATE TABLE file_stats (
        pipeline text NOT NULL,
        path text NOT NULL,
        size bigint NOT NULL,
        mtime_ms double precision NOT NULL,
        ino double precision NOT NULL,
        dev double precision NOT NULL,
        hash text COLLATE "C" NOT NULL,
        PRIMARY KEY (pipeline, path)
      );
    `,
  },
  {
    version: 3,
    sql: `
      -- As the SQLite ledger's migration 4: the current load of a file (its
      -- destination load marker carries the id), leases expired in a row,
      -- and the version a path held the bytes at (arrivals).
      ALTER TABLE files ADD COLUMN load_id text, ADD COLUMN lapses integer NOT NULL DEFAULT 0;
      ALTER TABLE file_paths ADD COLUMN version text;
    `,
  },
  {
    version: 4,
    sql: `
      -- As the SQLite ledger's migration 5: the stat cache is keyed by the
      -- source's version (mtime and inode locally, an ETag remotely).
      DROP TABLE file_stats;
      CREATE TABLE file_stats (
        pipeline text NOT NULL,
        path text NOT NULL,
        size bigint NOT NULL,
        version text NOT NULL,
        hash text COLLATE "C" NOT NULL,
        PRIMARY KEY (pipeline, path)
      );
    `,
  },
  {
    version: 5,
    sql: `
      -- As the SQLite ledger's migration 6: the code a file's committed rows
      -- were produced under, and what each code was made of.
      ALTER TABLE files ADD COLUMN code text;
      CREATE TABLE codes (
        pipeline text NOT NULL,
        code text NOT NULL,
        stages text NOT NULL,
        first_seen_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (pipeline, code)
      );
    `,
  },
  {
    version: 6,
    sql: `
      -- As the SQLite ledger's migration 7: pond and ripple runs, append-only,
      -- and one lease per pond.
      CREATE TABLE pond_events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        pond text NOT NULL,
        version text NOT NULL,
        run_id text NOT NULL,
        event text NOT NULL,
        ripple text,
        outlet text NOT NULL,
        trigger text NOT NULL,
        freshness timestamptz NOT NULL,
        input_version text,
        data_version text,
        error text,
        duration_ms bigint,
        rows bigint,
        worker text NOT NULL
      );
      CREATE INDEX pond_events_pond ON pond_events (pond, id);
      CREATE INDEX pond_events_run ON pond_events (run_id);

      -- As migration 1 for the file events, with a function that names the
      -- table it guards (events_append_only says "the events table").
      CREATE FUNCTION append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'the % table is append-only (% refused)', TG_TABLE_NAME, TG_OP;
      END
      $$;
      CREATE TRIGGER pond_events_no_update_delete BEFORE UPDATE OR DELETE ON pond_events FOR EACH ROW EXECUTE FUNCTION append_only();
      CREATE TRIGGER pond_events_no_truncate BEFORE TRUNCATE ON pond_events FOR EACH STATEMENT EXECUTE FUNCTION append_only();

      CREATE TABLE pond_leases (
        pond text PRIMARY KEY,
        token text NOT NULL,
        worker text NOT NULL,
        expires_at timestamptz NOT NULL
      );
    `,
  },
  {
    version: 7,
    sql: `
      -- As the SQLite ledger's migration 8: named leases ('pond:<pond>',
      -- 'fetch:<source>'), pond leases moved into them live ones included,
      -- and the append-only history of source cursors.
      CREATE TABLE leases (
        name text PRIMARY KEY,
        token text NOT NULL,
        worker text NOT NULL,
        expires_at timestamptz NOT NULL
      );
      INSERT INTO leases (name, token, worker, expires_at) SELECT 'pond:' || pond, token, worker, expires_at FROM pond_leases;
      DROP TABLE pond_leases;

      CREATE TABLE cursor_events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        source text NOT NULL,
        event text NOT NULL,
        from_cursor text,
        to_cursor text NOT NULL,
        file text,
        hash text,
        records bigint NOT NULL,
        pages integer NOT NULL,
        worker text NOT NULL
      );
      CREATE INDEX cursor_events_source ON cursor_events (source, id);
      CREATE TRIGGER cursor_events_no_update_delete BEFORE UPDATE OR DELETE ON cursor_events FOR EACH ROW EXECUTE FUNCTION append_only();
      CREATE TRIGGER cursor_events_no_truncate BEFORE TRUNCATE ON cursor_events FOR EACH STATEMENT EXECUTE FUNCTION append_only();
    `,
  },
  {
    version: 8,
    sql: `
      -- As the SQLite ledger's migration 9: what a committed load set aside
      -- (quarantine) and where, on the file and in the load's event.
      ALTER TABLE files ADD COLUMN quarantined bigint;
      ALTER TABLE files ADD COLUMN sidecar text;
      ALTER TABLE events ADD COLUMN quarantined bigint;
      CREATE INDEX events_replayed ON events (path) WHERE event = 'file:replayed';
    `,
  },
]
