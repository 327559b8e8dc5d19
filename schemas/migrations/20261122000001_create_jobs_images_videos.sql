-- gpuq system of record. Redis holds live queue state only; these tables hold every job's
-- history and its outputs. Rows are written by the services, never by clients.

CREATE TABLE IF NOT EXISTS jobs (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL,
    job_type         text NOT NULL,
    queue            text NOT NULL,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    prompt           text NOT NULL DEFAULT '',
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    config           jsonb NOT NULL DEFAULT '{}'::jsonb,
    project_id       text,
    video_id         text,
    image_id         text,
    credits          integer NOT NULL DEFAULT 0 CHECK (credits >= 0),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer NOT NULL CHECK (max_attempts >= 1),
    error_message    text,
    enhanced_prompt  text,
    worker_id        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- A finished job has a finish time; an unfinished one does not.
    CHECK ((status IN ('completed', 'failed', 'cancelled')) = (completed_at IS NOT NULL))
);

-- Owner listings and per-user in-flight limits.
CREATE INDEX IF NOT EXISTS jobs_user_status_idx ON jobs (user_id, status);
-- The reconciler scans unfinished jobs only.
CREATE INDEX IF NOT EXISTS jobs_unfinished_idx ON jobs (queue, created_at)
    WHERE status IN ('queued', 'processing');

-- Enqueue idempotency: one answer per (user, key) within the window.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id     uuid NOT NULL,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    response    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE TABLE IF NOT EXISTS images (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id       uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    image_index  integer NOT NULL CHECK (image_index >= 0),
    user_id      uuid NOT NULL,
    bucket       text NOT NULL CHECK (bucket <> ''),
    storage_path text NOT NULL CHECK (storage_path <> ''),
    thumbnail_path text,
    status       text NOT NULL DEFAULT 'completed',
    prompt       text NOT NULL DEFAULT '',
    seed         bigint CHECK (seed BETWEEN 0 AND 4294967295),
    width        integer,
    height       integer,
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job_id, image_index),
    UNIQUE (bucket, storage_path)
);
CREATE INDEX IF NOT EXISTS images_user_idx ON images (user_id, created_at DESC);

CREATE TABLE IF NOT EXISTS videos (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id           uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    video_index      integer NOT NULL DEFAULT 0 CHECK (video_index >= 0),
    user_id          uuid NOT NULL,
    bucket           text NOT NULL CHECK (bucket <> ''),
    storage_path     text NOT NULL CHECK (storage_path <> ''),
    thumbnail_path   text,
    status           text NOT NULL DEFAULT 'completed',
    prompt           text NOT NULL DEFAULT '',
    seed             bigint CHECK (seed BETWEEN 0 AND 4294967295),
    duration_seconds double precision CHECK (duration_seconds >= 0),
    width            integer,
    height           integer,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job_id, video_index),
    UNIQUE (bucket, storage_path)
);
CREATE INDEX IF NOT EXISTS videos_user_idx ON videos (user_id, created_at DESC);
