//! The migrations apply to an empty database and their constraints refuse duplicates.

use sqlx::{Connection, Executor, PgConnection};

async fn fresh_db() -> PgConnection {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());
    let mut admin = PgConnection::connect(&base)
        .await
        .expect("PostgreSQL must be running");
    let name = format!("gpuq_schema_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .unwrap();
    let url = match base.rfind('/') {
        Some(i) => format!("{}/{name}", &base[..i]),
        None => unreachable!("DATABASE_URL has a database"),
    };
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(std::path::Path::new(gpuq_schemas::MIGRATIONS_DIR))
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    conn
}

#[tokio::test]
async fn images_cannot_be_recorded_twice_for_one_index() {
    let mut db = fresh_db().await;
    let job = uuid::Uuid::now_v7();
    let user = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO jobs (id, user_id, job_type, queue, max_attempts) VALUES ($1, $2, 'sdxl_image_fast', 'sdxl_queue', 3)")
        .bind(job)
        .bind(user)
        .execute(&mut db)
        .await
        .unwrap();
    let insert = "INSERT INTO images (job_id, image_index, user_id, bucket, storage_path) VALUES ($1, $2, $3, 'b', $4)";
    sqlx::query(insert)
        .bind(job)
        .bind(0)
        .bind(user)
        .bind("k0")
        .execute(&mut db)
        .await
        .unwrap();
    let dup = sqlx::query(insert)
        .bind(job)
        .bind(0)
        .bind(user)
        .bind("k1")
        .execute(&mut db)
        .await;
    assert!(dup.is_err(), "second row for index 0 must be refused");
    let bad_status = sqlx::query("UPDATE jobs SET status = 'done' WHERE id = $1")
        .bind(job)
        .execute(&mut db)
        .await;
    assert!(bad_status.is_err(), "unknown status must be refused");
    let finished_without_time = sqlx::query("UPDATE jobs SET status = 'completed' WHERE id = $1")
        .bind(job)
        .execute(&mut db)
        .await;
    assert!(
        finished_without_time.is_err(),
        "a finished job needs completed_at"
    );
}
