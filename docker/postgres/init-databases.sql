-- lockgate's databases on the compose PostgreSQL: one per concern, each owned by its own role.
--
--   airflow      Airflow metadata (and the Celery result backend)
--   mlflow       MLflow tracking store and model registry
--   mlflow_auth  MLflow basic-auth users and permissions (its own migrations, its own database)
--   lockgate     inference logs and lockgate's own tables (audit trail, reports index)
--
-- The postgres image runs this once, with psql as the superuser, when its data directory is
-- empty (/docker-entrypoint-initdb.d). Passwords (and, for tests, names) come from the
-- container's environment through psql's \getenv: no secret is written in this file.
-- Needs psql >= 15 (\getenv).

\set ON_ERROR_STOP on

\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv mlflow_password MLFLOW_DB_PASSWORD
\getenv lockgate_password LOCKGATE_DB_PASSWORD

-- A missing password stops the container's first start instead of creating a role without one.
\if :{?airflow_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'AIRFLOW_DB_PASSWORD is not set'; END $$;
\endif
\if :{?mlflow_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'MLFLOW_DB_PASSWORD is not set'; END $$;
\endif
\if :{?lockgate_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'LOCKGATE_DB_PASSWORD is not set'; END $$;
\endif

-- Names default to the ones docker/compose.yaml uses; LOCKGATE_PG_PREFIX lets a test create a
-- uniquely named set on a shared server.
\getenv prefix LOCKGATE_PG_PREFIX
\if :{?prefix}
\else
  \set prefix ''
\endif
SELECT :'prefix' || 'airflow' AS airflow_name,
       :'prefix' || 'mlflow' AS mlflow_name,
       :'prefix' || 'mlflow_auth' AS mlflow_auth_name,
       :'prefix' || 'lockgate' AS lockgate_name
\gset

-- format(%I, %L) quotes every identifier and literal: a password may hold any character.
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'airflow_name', :'airflow_password') \gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'mlflow_name', :'mlflow_password') \gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'lockgate_name', :'lockgate_password') \gexec

SELECT format('CREATE DATABASE %I OWNER %I', :'airflow_name', :'airflow_name') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'mlflow_name', :'mlflow_name') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'mlflow_auth_name', :'mlflow_name') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'lockgate_name', :'lockgate_name') \gexec

-- Only each owner connects to its database (PUBLIC may connect to any database by default).
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', d)
  FROM unnest(ARRAY[:'airflow_name', :'mlflow_name', :'mlflow_auth_name', :'lockgate_name']) AS d \gexec
