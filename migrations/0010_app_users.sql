-- The analytics app's users (dashboard pages and REST API). Idempotent: the dashboard
-- applies this file itself at start (so that `dashboard user add` works before the
-- transform has run), and the transform applies it in order with the others.
CREATE SCHEMA IF NOT EXISTS app;
COMMENT ON SCHEMA app IS 'The analytics app (dashboard and REST API): its users.';

CREATE TABLE IF NOT EXISTS app.users (
    username text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    role text NOT NULL CHECK (role IN ('viewer', 'analyst', 'admin')),
    password_hash text NOT NULL,
    token_version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);
COMMENT ON TABLE app.users IS 'Users of the dashboard and the REST API. Managed with `dashboard user add|passwd|remove|list`.';
COMMENT ON COLUMN app.users.username IS 'Login name: letters, digits and . _ @ -, at most 64 characters.';
COMMENT ON COLUMN app.users.role IS 'viewer (pages), analyst (+ detail lists and exports), admin (+ raw records, replay, users).';
COMMENT ON COLUMN app.users.password_hash IS 'Argon2id hash in PHC format; the password itself is never stored.';
COMMENT ON COLUMN app.users.token_version IS 'Bumped by a password change: sessions and tokens issued before it are refused.';
COMMENT ON COLUMN app.users.created_at IS 'When the user was added.';
COMMENT ON COLUMN app.users.updated_at IS 'Last change of role or password.';
COMMENT ON COLUMN app.users.last_login_at IS 'Last successful login (page or API).';
