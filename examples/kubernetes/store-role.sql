-- The roles of sy's shared store, with the least each one needs. The store database is
-- sy's alone. Role and database names are the whole server's, so each store on a server
-- has its own: you choose them, and pass the two role names as psql variables (there is
-- no default; without them the file stops before it changes anything). Run it once,
-- connected to the store database, as its owner or a superuser (on a managed service: the
-- administrator that created the database), then set the two passwords:
--   createdb <REPLACE_STORE_DB>                    # as that administrator
--   psql -d <REPLACE_STORE_DB> -v ON_ERROR_STOP=1 \
--        -v owner=<REPLACE_STORE_OWNER_ROLE> -v app=<REPLACE_STORE_APP_ROLE> -f store-role.sql
--   psql -d <REPLACE_STORE_DB> -c '\password <REPLACE_STORE_OWNER_ROLE>' -c '\password <REPLACE_STORE_APP_ROLE>'
-- e.g. sy_myapp, sy_owner_myapp and sy_app_myapp. (\password sends a hash, so neither
-- password reaches the server's logs.) Running it again with the same names changes
-- nothing, and grants the app role the rows of tables created since. It ends by checking
-- what it promises and fails, naming the problem, where the server does not allow it.
--
--   owner  owns schema sy and what is in it. Only `sy init` (init-job.yaml) connects as it,
--          to create the schema's tables and apply the migrations of a newer sy. The schema
--          is made here, so the owner needs no CREATE on the database: it can create
--          nothing outside schema sy.
--   app    the daemons (daemon.yaml) and the admin's own machine (`sy secret create`,
--          `sy client create`): reads and writes rows of sy's tables and uses their
--          sequences; LISTEN/NOTIFY and row locks (FOR UPDATE SKIP LOCKED) need nothing
--          more. It cannot change the schema, create anything anywhere (no temporary tables
--          either), or empty a table at once. Clients of the lease API (the CronJob, the
--          agent) never connect here.
-- Neither can create roles or databases or read a role's password (pg_authid), and neither
-- is superuser or a member of any role.
-- What sits in the store is sealed with the master key, which never reaches this server:
-- these grants decide who can change or delete the store's rows, not who can read secrets.

\set ON_ERROR_STOP on
\if :{?owner}
\else
  \set owner ''
\endif
\if :{?app}
\else
  \set app ''
\endif
-- The names, for the DO blocks below (psql does not substitute variables inside them).
SELECT set_config('sy_store.owner', :'owner', false) AS owner_role, set_config('sy_store.app', :'app', false) AS app_role \gset
DO $$
DECLARE
  owner_role text := current_setting('sy_store.owner');
  app_role text := current_setting('sy_store.app');
BEGIN
  IF owner_role = '' OR app_role = '' THEN
    RAISE EXCEPTION 'store-role.sql needs the names of the store''s two roles: psql -v owner=NAME -v app=NAME (each store on a server its own, e.g. sy_owner_myapp and sy_app_myapp)';
  END IF;
  IF owner_role = app_role THEN
    RAISE EXCEPTION 'the owner and app roles must be two roles, not both %', owner_role;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = owner_role) THEN
    EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 5', owner_role);
  END IF;
  -- Sized for a fleet: each sy command holds one connection only while it needs it, and a
  -- daemon holds one more for LISTEN. Raise it with the number of daemons.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = app_role) THEN
    EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 60', app_role);
  END IF;
  -- An administrator that is not superuser must be a member of the owner role to make it
  -- the schema's owner and to set its default privileges (revoked again at the end).
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT %I TO %I', owner_role, current_user);
  END IF;
END
$$;

-- Only sy's roles may connect; nobody may create schemas or temporary tables here.
DO $$
BEGIN
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I, %I', current_database(), current_setting('sy_store.owner'), current_setting('sy_store.app'));
END
$$;
-- PostgreSQL 14 and older let every role create objects in schema public.
REVOKE ALL ON SCHEMA public FROM PUBLIC;

DO $$
BEGIN
  IF to_regnamespace('sy') IS NULL THEN
    EXECUTE format('CREATE SCHEMA sy AUTHORIZATION %I', current_setting('sy_store.owner'));
  END IF;
END
$$;
ALTER SCHEMA sy OWNER TO :"owner";
REVOKE ALL ON SCHEMA sy FROM PUBLIC;
GRANT USAGE ON SCHEMA sy TO :"app";

-- What the owner creates in schema sy from now on, the app role may use, rows only; and
-- what the owner already created (this file run again after `sy init`).
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA sy GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA sy GRANT USAGE ON SEQUENCES TO :"app";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA sy TO :"app";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA sy TO :"app";

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('REVOKE %I FROM %I', current_setting('sy_store.owner'), current_user);
  END IF;
END
$$;

-- The promises above, checked on this server.
DO $$
DECLARE
  owner_role text := current_setting('sy_store.owner');
  app_role text := current_setting('sy_store.app');
  problems text[] := '{}';
  r record;
BEGIN
  FOR r IN SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls
           FROM pg_roles WHERE rolname IN (owner_role, app_role) LOOP
    IF r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls THEN
      problems := problems || format('%s has a role attribute it must not have (run as a superuser: ALTER ROLE %I NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS)', r.rolname, r.rolname);
    END IF;
  END LOOP;
  FOR r IN SELECT m.rolname AS member, g.rolname AS role FROM pg_auth_members a
           JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid
           WHERE m.rolname IN (owner_role, app_role) LOOP
    problems := problems || format('%s is a member of %s (REVOKE %I FROM %I)', r.member, r.role, r.role, r.member);
  END LOOP;
  FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN (owner_role, app_role) LOOP
    IF has_schema_privilege(r.rolname, 'public', 'CREATE') THEN
      problems := problems || format('%s can create objects in schema public (run as its owner: REVOKE CREATE ON SCHEMA public FROM PUBLIC)', r.rolname);
    END IF;
    IF has_database_privilege(r.rolname, current_database(), 'CREATE') OR has_database_privilege(r.rolname, current_database(), 'TEMPORARY') THEN
      problems := problems || format('%s can create schemas or temporary tables in this database', r.rolname);
    END IF;
  END LOOP;
  IF has_schema_privilege(app_role, 'sy', 'CREATE') THEN
    problems := problems || format('%s can create objects in schema sy', app_role);
  END IF;
  IF cardinality(problems) > 0 THEN
    RAISE EXCEPTION 'the store roles are not least-privilege here: %', array_to_string(problems, '; ');
  END IF;
END
$$;
